"""``python -m eomatch``."""

from eomatch.cli.main import run

run()
