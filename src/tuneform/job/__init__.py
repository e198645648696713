"""The job: one bundle in, one published version out (data, base scores, training, scores, gates, publish).

Every backend runs this same job. Imports every stage below it: `core`, `runfile`, `evals`, `data`,
`estimate`, `registry`, `train`, `plan`.
"""
