"""The job of the bare-RQ baseline: does nothing, so what is measured is RQ's own cost per job."""


def noop() -> None:
    """A job that does nothing."""
