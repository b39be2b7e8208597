"""`os` for the virtual board: the unix port's `uos`, with `ilistdir` as the ESP32's.

The ESP32's flash filesystems list (name, type, inode, size); the unix port's
VfsPosix leaves out the size, which `mpremote ls` shows. Everything else is
the built-in module (the flash directory is the interpreter's cwd).
"""

from uos import *  # noqa: F403
from uos import ilistdir as _ilistdir
from uos import stat as _stat


def ilistdir(path="."):
    for entry in _ilistdir(path):
        name = entry[0]
        size = 0
        if entry[1] == 0x8000:
            try:
                size = _stat(path + "/" + name if path not in ("", ".") else name)[6]
            except OSError:
                pass
        yield (name, entry[1], entry[2] if len(entry) > 2 else 0, size)


def listdir(path="."):
    return [e[0] for e in _ilistdir(path)]
