"""Benchmarks of issue #6 (scripts: ``python benchmarks/<name>.py``); results in ``benchmarks/RESULTS.md``."""
