"""Small helpers shared by every package (file I/O)."""
