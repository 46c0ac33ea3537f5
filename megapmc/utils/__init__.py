"""Small helpers shared by every package (file I/O, config dataclasses read back from JSON)."""
