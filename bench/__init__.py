"""Squak's benchmarks: `python -m bench` runs the whole month; `bench_*.py` time one engine each."""
