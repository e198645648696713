"""The training path of a job: tokenisation with loss masks (format.py) and the engines (engine.py).

Nothing heavy is imported here: `tuneform preview` needs format.py without torch, and on a GPU
`import unsloth` must come before transformers, trl and peft, so engine.py imports them only once
it has chosen an engine.

A new trainer is an engine in engine.py. Imports `core`, `runfile` and `data`.
"""
