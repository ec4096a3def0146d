"""Watchkeeper: a production monitor for LLM traffic."""

__version__ = "0.1.0"
