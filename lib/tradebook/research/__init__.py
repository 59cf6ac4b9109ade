"""Research tools: parameter sweeps, walk-forward, the vectorised SMA grid (SWP-1, SWP-2)."""
