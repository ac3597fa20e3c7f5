"""Benchmarks of Caterva2's hot paths against local Blosc2 reads (`python -m bench`)."""
