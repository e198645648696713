"""What every stage shares and nothing else: the error base (errors), the Hub client and its retry rule, the one
escaper for text bound for GitHub markdown, workflow commands and rich terminals (markup), and
the manifest (a trained version's record, read from the estimate layer up).

Imports nothing from tuneform: every other package may import this one.
"""
