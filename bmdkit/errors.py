"""bmdkit's own errors: one base class, :class:`BMDKitError`, for every error about what
bmdkit was given (a parameter, the data, a file), so that a caller such as the
``bmdkit`` command tells them from bugs.

Each subclass is also the built-in error that was raised before it existed
(``ValueError``, ``TypeError``, ``FileNotFoundError``, ...), so ``except
ValueError`` keeps working. Imports nothing (the foundations of every layer).

Examples
--------
>>> error = ParameterError("lr must be a float in (0, inf), got 'fast'")
>>> isinstance(error, BMDKitError), isinstance(error, ValueError), isinstance(error, TypeError)
(True, True, True)
"""

from __future__ import annotations

__all__ = ["BMDKitError", "FileClashError", "InputError", "MissingFileError", "ParameterError",
           "SavedFileError"]


class BMDKitError(Exception):
    """The base class of bmdkit's own errors: the message says what to fix."""


class ParameterError(BMDKitError, ValueError, TypeError):
    """A parameter, argument or option has a wrong type or value; the message names it.

    Both a ``ValueError`` and a ``TypeError`` (as scikit-learn's
    ``InvalidParameterError``): a wrong type and a wrong value are one kind of
    mistake, reported the same way (:mod:`bmdkit.params`).
    """


class InputError(BMDKitError, ValueError):
    """Bad input data: every offending item is named in the message and in ``problems``.

    Parameters
    ----------
    summary : str
        What is wrong, e.g. ``"2 image files are missing"``.
    problems : dict, default=()
        Offending item (a row label, a column name, a path...) -> what is
        wrong with it. All of them are listed in the message.

    Examples
    --------
    >>> err = InputError("2 targets are not finite", {3: "nan", 7: "inf"})
    >>> print(err)
    2 targets are not finite:
      3: nan
      7: inf
    >>> isinstance(err, ValueError), err.problems[7]
    (True, 'inf')
    """

    def __init__(self, summary, problems=()):
        self.summary = summary
        self.problems = dict(problems)
        lines = [f"  {item}: {why}" if why else f"  {item}" for item, why in self.problems.items()]
        super().__init__("\n".join([f"{summary}:", *lines]) if lines else summary)


class SavedFileError(BMDKitError, ValueError):
    """A saved model or results folder that bmdkit cannot read: damaged, or of another format."""


class MissingFileError(BMDKitError, FileNotFoundError):
    """A file or folder bmdkit was pointed to does not exist."""


class FileClashError(BMDKitError, FileExistsError):
    """bmdkit would overwrite a file or folder that exists (pass ``overwrite=True``)."""
