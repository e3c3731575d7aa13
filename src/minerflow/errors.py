"""Error types whose message is one line naming the file, the key and what was expected.

The CLI turns every :class:`MinerflowError` into that one line on stderr and a non-zero
exit code, so library code raises these instead of printing.
"""

from __future__ import annotations

from os import PathLike

__all__ = ["ConfigError", "InputError", "MinerflowError"]


class MinerflowError(Exception):
    """Base class of every error minerflow reports to a user as a single line."""


class InputError(MinerflowError, ValueError):
    """Bad user input: a file, array or setting that is missing, malformed or out of range.

    >>> str(InputError("data.h5", "samples/weights", "no NaN values, found 3"))
    'data.h5: samples/weights: expected no NaN values, found 3'
    """

    def __init__(self, source: str | PathLike[str], key: str | None, expected: str) -> None:
        self.source = str(source)
        self.key = key
        self.expected = expected
        where = f"{self.source}: {key}" if key else self.source
        super().__init__(f"{where}: expected {expected}")

    def __reduce__(self) -> tuple[type[InputError], tuple[str, str | None, str]]:
        """Rebuild from the three parts: the error crosses process boundaries intact."""
        return type(self), (self.source, self.key, self.expected)


class ConfigError(InputError):
    """An input or analysis configuration file that does not validate."""
