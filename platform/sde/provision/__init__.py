"""Provisioning: build a project's own read-only data from its grants."""
