"""Command-line entry points: ``conveyor`` (the operator) and, later, ``kubectl-conveyor``."""
