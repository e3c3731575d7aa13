"""The ``minerflow`` command line."""
