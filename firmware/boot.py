# boot.py: runs first on every boot and soft reset (before main.py), as on any ESP32.
# Kept minimal: the application starts in main.py, so a broken main.py can still
# be replaced over the REPL (mpremote cp) after a Ctrl-C.
import gc

gc.collect()
