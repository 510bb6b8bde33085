"""Giao Ban: online briefings and organization records for a multi-level organization."""

__version__ = "0.1.0"
