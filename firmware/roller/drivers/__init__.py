"""Hardware drivers: the only modules that touch `machine`."""
