"""User-facing errors.

Anything raised as :class:`KdlicError` is printed by the CLI as one line
(``kdlic: error: ...``) with exit code 2 and no traceback: it describes a problem
with the user's input (a file, a config value), not a bug in kdlic.
"""


class KdlicError(Exception):
    """A problem with the user's input, reported without a traceback."""
