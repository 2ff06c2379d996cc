"""What people see: pure functions from API objects to JSON-ready data and text (no I/O).

The kubectl plugin (`conveyor.cli`) and the dashboard (`conveyor.dashboard`) both show these.
"""
