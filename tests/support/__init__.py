"""Test support: the cluster under test and waiting helpers (never fixed sleeps)."""
