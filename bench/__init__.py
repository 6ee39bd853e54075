"""Benchmarks: each script prints a table and writes JSON with the machine description."""
