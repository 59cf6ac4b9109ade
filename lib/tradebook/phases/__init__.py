"""The phases: what the reconcile, decide, execute and monitor steps do, the flatten,
intents and the crash-safe order path they go through.
"""
