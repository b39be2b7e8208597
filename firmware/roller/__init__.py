"""The roller firmware package: motion core, drivers and (later) the app."""
