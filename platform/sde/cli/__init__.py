"""The `sde` command line."""
