"""Kubernetes API access: clients, patch helpers, Events."""
