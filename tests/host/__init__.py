"""Host library and CLI tests (CPython)."""
