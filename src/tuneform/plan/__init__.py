"""From repository states and a registry to what each run file means: validate, plan, and their rendering.

Read-only and fast (no torch, no secrets). Imports `core`, `runfile`, `evals`, `data`, `estimate`, `registry`.
"""
