"""Use cases that compose the domain with I/O: what the CLI and Python users call."""
