"""Benchmarks on generated data: `python -m bench` (or `make bench`) prints one table per
section. Sections are modules registered in `bench.__main__.SECTIONS`.
"""
