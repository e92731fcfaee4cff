"""Test support: real services started for the test run."""
