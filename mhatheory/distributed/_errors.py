"""The error of a multi-process run (:mod:`mhatheory.distributed`)."""


class DistributedError(RuntimeError):
    """A multi-process run cannot start or cannot go on; the message names the flag or the
    process at fault and what to do."""
