"""Unattended operation: the daemon and its schedule, alerts, logs, health, doctor.
"""
