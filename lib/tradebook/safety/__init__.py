"""Safety: the pre-trade gate and its rules, account breakers, the trading state,
the controls and the kill switch, exposure against the caps.

Safety never imports a broker adapter, a phase, the engine, the CLI or the panel
(docs/architecture.md).
"""
