"""Koppel's benchmarks (see docs/benchmarks.md); not part of the installed package."""
