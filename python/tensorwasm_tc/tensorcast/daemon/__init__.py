"""The TensorCast Store Daemon."""
