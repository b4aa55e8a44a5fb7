"""Entry points: the ``eomatch`` command and its subcommands."""
