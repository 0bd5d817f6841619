"""The package's own error types: bad input, explained in one line.

Every error about what a user gave (an argument, a data set, a checkpoint, an output folder) derives from
:class:`VQPriorError`; its message names the argument or file and says what was expected. The command-line entry
points print such an error as one line and exit with status 2 (``pipelines.cli.run``); any other exception is a bug
and keeps its traceback. A run stopped by Ctrl-C (or SIGTERM, SIGHUP) ends with one line too, saying what was kept
(:class:`Interrupted`).
"""

from __future__ import annotations

__all__ = ["CheckpointError", "DataError", "Interrupted", "OutputError", "UsageError", "VQPriorError"]


class VQPriorError(Exception):
    """Base of the errors about the user's input; the message is the whole explanation."""


class UsageError(VQPriorError, ValueError):
    """An argument is out of range, or contradicts another argument or the files it names."""


class DataError(VQPriorError, ValueError):
    """A data set or an input file could not be found or read; the message names the path or argument and what was
    expected."""


class CheckpointError(VQPriorError, ValueError):
    """A checkpoint is missing, unreadable, of the wrong kind, or does not fit the model it is used with."""


class OutputError(VQPriorError, OSError):
    """A file could not be written (a full disk, a folder made read-only during the run); the file is as it was
    before the write began."""


class Interrupted(KeyboardInterrupt):
    """A fit stopped by Ctrl-C or a termination signal; the message says which epochs its checkpoints keep and how
    to go on."""
