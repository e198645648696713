"""What every stage shares and nothing else: the Hub client and its retry rule, and the one
escaper for text bound for GitHub markdown, workflow commands and rich terminals (markup).

Imports nothing from tuneform: every other package may import this one.
"""
