"""AlpacaBroker: the adapter over alpaca-py, its conversions, orders, retries and the
API circuit breaker. It logs as ``tradebook.broker.alpaca.broker``.
"""
