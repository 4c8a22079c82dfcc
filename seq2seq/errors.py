"""Errors meant for people: entry points print their one-line message instead of a traceback."""


class UserError(ValueError):
    """Bad input or configuration; the message names the file or key and what is wrong."""


def check_int(key: str, value: object, minimum: int = 1, optional: bool = False) -> None:
    """A one-line error unless `value` (setting `key`) is an integer of at least `minimum`, or
    None where that means "no limit" (`optional`)."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        either = " or null" if optional else ""
        raise UserError(f"{key}={value}: expected an integer of at least {minimum}{either}")


def check_choice(key: str, value: object, choices: tuple[str, ...]) -> None:
    """A one-line error unless `value` (setting `key`) is one of `choices`."""
    if value not in choices:
        raise UserError(f"{key}={value}: expected one of {', '.join(choices)}")
