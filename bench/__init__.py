"""Benchmarks of the kit (`make bench`); never run as timed tests."""
