"""Helpers for tests: real local servers and worker processes."""
