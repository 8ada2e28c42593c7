"""Benchmarks (`make bench`): each prints ratios against baselines run in the same process."""
