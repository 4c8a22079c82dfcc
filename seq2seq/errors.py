"""Errors meant for people: entry points print their one-line message instead of a traceback."""


class UserError(ValueError):
    """Bad input or configuration; the message names the file or key and what is wrong."""
