"""What every stage shares and nothing else: the Hub client and its retry rule.

Imports nothing from tuneform: every other package may import this one.
"""
