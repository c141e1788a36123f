"""The `kubegate` command: one module per subcommand."""
