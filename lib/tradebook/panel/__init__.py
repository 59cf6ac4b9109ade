"""The control panel (CTL-4): the widgets and the Voilà server. Only the CLI imports it.
"""
