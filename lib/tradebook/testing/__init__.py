"""Test infrastructure that ships with the package because the demo uses it.
"""
