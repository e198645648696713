"""Training rows: the one reader of data files (formats, converters), token counting, the data check.

A new data format is a converter in reader.py. Imports `core`, `runfile` and `evals` (the data
check looks for eval prompts leaked into training rows).
"""
