"""Eval suites (YAML + JSONL), the metrics that score generations against them, and gates."""
