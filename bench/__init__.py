"""Benchmarks: scripts that print one JSON object each (see docs/performance.md), never tests.

Run them from the repository root with `python -m bench.<name>`; `make bench` runs them all.
"""
