"""Liên thông Hub."""
__version__ = "0.1.0"
