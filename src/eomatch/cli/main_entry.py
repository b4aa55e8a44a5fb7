"""``python -m eomatch.cli.main_entry``: the ``eomatch`` command without a console script."""

from eomatch.cli.main import run

if __name__ == "__main__":
    run()
