"""Errors that end an input as a failure with a reason a user can read."""


class InputError(ValueError):
    """This input cannot be ingested; str(error) is the one-line reason shown by `ingest failures`."""


class ServiceError(RuntimeError):
    """A command cannot do its job (Redis unreachable, database missing...); str(error) is the one-line message."""
