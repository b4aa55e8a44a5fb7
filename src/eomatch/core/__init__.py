"""Pure domain layer: orbits, crossovers and records. Nothing in here reads files or the network."""
