"""Figures from arrays (matplotlib + mplhep)."""
