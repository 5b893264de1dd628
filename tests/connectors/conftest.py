"""Connector tests use the national sandbox fixtures of tests/conftest.py."""
