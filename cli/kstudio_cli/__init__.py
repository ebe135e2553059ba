"""The `kstudio` command line: one entry point, one subcommand per component."""
