"""Subcommands of the `kubegate` command, one module each (see `exchanger.cli`)."""
