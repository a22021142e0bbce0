"""Fuzzing: Schemathesis against the node's own OpenAPI and Hypothesis on the parsers.

See tests/fuzz/README.md for the budgets and how to run a longer one by hand.
"""
