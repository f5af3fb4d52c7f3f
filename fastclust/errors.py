"""The errors fastclust raises for what its user gave it: bad parameters, data, checkpoints.

Each names the argument or file at fault. The command line reports every :class:`FastclustError`
(and the operating system's OSError) as one line and a non-zero exit code; anything else is a
bug in fastclust and shows its traceback.
"""


def one_line(err, limit=300):
    """``err``'s message on one line (PyTorch's state-dict errors span several), cut at ``limit``."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


class FastclustError(Exception):
    """A failure caused by the user's input, not by fastclust."""


class ParameterError(FastclustError, ValueError):
    """A parameter (of a method, a trainer or the command line) outside what it allows."""


class CheckpointError(FastclustError, ValueError):
    """A checkpoint, model or run-directory file that cannot be used: unreadable, incomplete, or
    written by another run."""
