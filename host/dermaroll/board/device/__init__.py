"""MicroPython-side modules of the virtual board.

This folder goes on MICROPYPATH ahead of the firmware when the firmware runs
on the virtual board (and in firmware tests): its `machine.py` shadows the
unix port's built-in `machine`. The firmware never imports anything else from
here; tests and the board runner reach the simulation through `vboard`.
"""
