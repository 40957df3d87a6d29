"""The one exception type users see: its message is a complete, actionable sentence."""


class EdgegenError(Exception):
    """Bad input or environment; the CLI prints the message on one line and exits with status 2."""


class GateFailed(EdgegenError):
    """A check ran to the end and failed a gate (not bad input): the CLI prints `table` on stdout, the message as
    its error line, and exits with status 1."""

    def __init__(self, message: str, *, table: str):
        super().__init__(message)
        self.table = table
