"""Benchmarks (not tests): each prints its figures."""
