"""Durable call log: journal + immutable Parquet partitions."""
