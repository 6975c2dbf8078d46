"""The one exception type the exporter raises for bad input; __main__ turns it into a one-line message."""


class ExportError(Exception):
    """A problem with the user's input or environment, described in one line."""
