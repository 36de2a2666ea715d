"""The exceptions core/ raises; the Processing glue turns them into one-line messages."""


class TimeSeriesError(ValueError):
    """Bad input. The message names the file / band / date / parameter at fault and what to do."""


class Cancelled(Exception):
    """The user cancelled (``is_canceled()`` became true); outputs are rolled back."""


class DaskUnavailable(RuntimeError):
    """A scheduler was given but dask.distributed cannot be imported or reached."""
