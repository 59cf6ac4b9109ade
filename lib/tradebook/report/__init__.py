"""The report: the ledger read into tables (build), their sections and figures.
"""
