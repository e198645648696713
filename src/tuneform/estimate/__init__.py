"""What a run costs before it runs: the catalog (flavors, model shapes), the estimator, sizing, calibration.

No torch, no network: plan prices runs offline. A new GPU flavor or model shape goes in catalog.py.
Imports `core`, `runfile` and `data`.
"""
