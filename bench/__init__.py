"""Benchmarks and load tests of rero; each runs from the project root as
``python -m bench.NAME``."""
