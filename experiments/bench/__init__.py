"""The pieces of ``experiments/benchmark.py``: one module per measured question."""
