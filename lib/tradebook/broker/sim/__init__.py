"""SimBroker: the embedded simulated venue (state file, order book, fills, venue rules).
"""
