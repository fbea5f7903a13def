"""Benchmarks behind `marginsync bench`: they print figures, they do not assert them."""
