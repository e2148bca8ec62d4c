"""The TensorCast Global Store."""
