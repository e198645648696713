"""Where trained versions live, found by run key: a folder (local) or Hub model repos (hub).

Plan reads a registry, apply and the job write to it. Imports `core`, `runfile`.
"""
