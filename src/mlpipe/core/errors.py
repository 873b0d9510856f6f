"""The one exception type a stage raises for bad input, bad params or bad data."""


class PipelineError(Exception):
    """A problem the user can fix: the message names the column, row, field or key at fault.

    Stages raise it; :func:`mlpipe.core.stage.run` turns it into one line on stderr and exit code 1.
    """
