"""The loopback Alpaca fake: a local HTTP server answering like Alpaca's trading and
market data APIs (``python -m tradebook.testing.alpaca_fake.server``).
"""
