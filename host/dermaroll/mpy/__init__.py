"""Code that runs inside the MicroPython interpreter (and, unchanged, in CPython)."""
