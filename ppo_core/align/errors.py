"""The one exception type the alignment stages raise for bad input."""


class AlignError(Exception):
    """Bad input to an alignment stage (missing model, empty data, bad setting).

    The CLI prints the message as a single line and exits non-zero; library callers catch it like any
    other exception. The message names the offending setting or path.
    """
