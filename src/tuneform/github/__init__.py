"""GitHub: the REST client, sticky PR comments, the results and reuse lookups the workflows post.

Imports every stage below it (it reports on plans, jobs and backends); only `cli` imports it.
"""
