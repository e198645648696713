"""Eval suites (YAML + JSONL), the metrics that score predictions against them, and gates.

Pure and light (no model, no torch): a new metric is a function in metrics.py. Generating the
predictions with a model is the job's step (job/evaluate.py). Imports `core` and `runfile`.
"""
