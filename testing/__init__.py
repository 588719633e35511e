"""Benchmarks and the scaffolding they share with the tests (the Omni stand-in server, the parity replay).

Nothing in the library imports this package; `liveavatar bench` and the tests do.
"""
