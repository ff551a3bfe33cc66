"""Benchmarks: `python -m benchmarks [--quick]` runs them all (see benchmarks/__main__.py)."""
