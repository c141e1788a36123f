"""The exit statuses of `kubegate audit ...`, shared by its modules: 0 proven or done,
1 tampered or not proven, 2 called wrongly or something unreadable."""

EXIT_OK, EXIT_TAMPERED, EXIT_UNREADABLE = 0, 1, 2
