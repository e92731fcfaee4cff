"""Configuration, database and errors shared by every sde component."""
