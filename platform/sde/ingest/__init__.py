"""Ingest: validate a source, de-identify it and publish an immutable dataset version."""
