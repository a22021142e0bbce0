"""Benchmarks run by ``crisisgw bench``; every figure is measured in the same run."""
