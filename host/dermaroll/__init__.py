"""dermaroll: host library and CLI for the dermaroll smart derma roller."""

__version__ = "0.1.0"
