"""The virtual board: the unmodified firmware on MicroPython's unix port with simulated peripherals."""
