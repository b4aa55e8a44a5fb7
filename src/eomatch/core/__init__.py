"""Pure domain layer: orbits, crossovers and records. Nothing in here reads files or the network.

Nothing in here imports ``config``, ``io`` or the layers above, nor their libraries (pydantic,
httpx, psycopg, ...): ``lint-imports`` checks it (docs/design/layers.md), so importing any
``eomatch.core`` module stays cheap.
"""
