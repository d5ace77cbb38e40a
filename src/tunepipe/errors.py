"""Errors a user can act on: printed without a traceback, with the file and the fix."""


class TunepipeError(Exception):
    """A problem with the user's input or environment (bad params, bad data), not a bug."""


class ParamsError(TunepipeError):
    """params.yaml (or an override) does not match the schema."""


class DataError(TunepipeError):
    """The dataset cannot be used as it is (missing column, one class, corrupt file...)."""
