"""Ledgers: where reservations and spend are kept (memory, SQLite file, Redis)."""
