"""Typed, validated configuration: the workflow input file and the analysis config."""
