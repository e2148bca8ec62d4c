"""Data files shipped in the wheel (example guests)."""
