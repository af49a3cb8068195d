"""Benchmarks: what the security layer costs (``python -m bench`` / ``make bench``).

Everything runs on 127.0.0.1: a backend, two plain pass-through proxies, two
``tunduk run`` security servers, a load generator (wrk, or a Python fallback) and
in-process micro-benchmarks.  One table on stdout, every figure in a JSON file.
"""
