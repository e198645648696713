"""The run-file contract: schema, guarded YAML with positions, problems, run key, repository settings.

Also how files are read from a repository state (working tree or git revision) and what outside
facts (Hub revisions, file hashes) resolve a run's key. Imports only `core`.
"""
