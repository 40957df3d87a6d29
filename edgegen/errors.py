"""The one exception type users see: its message is a complete, actionable sentence."""


class EdgegenError(Exception):
    """Bad input or environment; the CLI prints the message on one line and exits with status 2."""
