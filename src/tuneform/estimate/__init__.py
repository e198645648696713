"""What a run costs before it runs: the catalog (flavors, model shapes), the estimator, sizing, calibration.

No torch, no network: plan prices runs offline. A new GPU flavor is an entry in flavors.json, a
new known model its config.json subset in models.json (both read by catalog.py).
Imports `core`, `runfile` and `data`.
"""
