"""gaf's own error types.

Every error caused by bad input (a file, a field, a config value) is raised as
a :class:`GafError` subclass whose message names the file, the video and the
field at fault. The CLI prints such errors as one line and exits with status 2
instead of showing a traceback.
"""

from __future__ import annotations


class GafError(Exception):
    """Base class of every error gaf raises on purpose."""


class AnnotationError(GafError, ValueError):
    """An annotation or prediction file is malformed (names file, video, field)."""


class ConfigError(GafError, ValueError):
    """A config file or a ``--set key=value`` override is invalid."""


class DataError(GafError, ValueError):
    """A feature file, video file or dataset folder is missing or malformed."""


class CheckpointError(GafError, ValueError):
    """A checkpoint is missing, corrupt, or does not fit the model config."""


class OutputError(GafError, OSError):
    """An output cannot be written where asked (an input, a folder, a device, a full or read-only disk)."""


class TrainingError(GafError, FloatingPointError):
    """Training diverged (a NaN / Inf loss); names the epoch, stage, batch and its videos."""
