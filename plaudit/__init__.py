"""Plaudit: reward models from human feedback. The CLI lives in `plaudit.cli`."""

__version__ = "0.1.0"
