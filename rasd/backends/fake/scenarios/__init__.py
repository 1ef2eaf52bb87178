"""Packaged scenario files for the fake backend (``--scenario NAME``); format in FORMAT.md."""
