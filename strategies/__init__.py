"""Your strategies: one file each, named in params as ``strategies.<file>:<Class>`` (README, "Your own strategy")."""
