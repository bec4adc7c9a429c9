"""Blob backends holding sealed segments (local directory, memory)."""
