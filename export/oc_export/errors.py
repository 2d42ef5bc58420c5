"""The one exception type the CLI turns into a one-line message on stderr and exit code 2.

Anything raised as `ExportError` is a problem with the user's input (a missing folder, an unsupported
architecture, a bad layer index, an unwritable output). Any other exception is a bug and keeps its traceback.
"""


class ExportError(Exception):
    """A user-facing error: the message is complete and printed as-is, without a traceback."""
