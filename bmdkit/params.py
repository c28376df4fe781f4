"""Parameters checked from one declared table: constraints, one checker, one message.

An estimator declares, for each of its parameters, the values it accepts as a
list of constraints (in the manner of scikit-learn's private
``_parameter_constraints``); :func:`validate_params` checks them all in one
place and raises one :class:`~bmdkit.errors.ParameterError` (a ``ValueError``
and a ``TypeError``) with one message pattern::

    <name> must be <constraint> [or <constraint> ...], got <value!r>

A value passes when it meets any constraint of its list. Constraints:

* :class:`Interval` (``Interval(Integral, 1, None)``: an integer >= 1;
  ``Interval(Real, 0, 1, closed="left")``: a number in [0, 1)); a bool is
  never a number here, and a real interval refuses NaN;
* :class:`Options` (one of a few values, ``None`` included);
* a type (``bool``, ``str``, ``dict`` ...), ``None`` (the value ``None``);
* :class:`Check`: a function raising a ``ParameterError`` of its own (for a
  value whose check needs a library, e.g. a timm model name).

:func:`bad_values` gives, for each constraint list, values it refuses (a value
of a wrong type and one out of range): the tests of every estimator derive
their bad-parameter cases from the table with it. Imports no torch.

Examples
--------
>>> from numbers import Integral, Real
>>> constraints = {"lr": [Interval(Real, 0, None, closed="neither")],
...                "n_threads": [None, Interval(Integral, 1, None)],
...                "lr_schedule": [Options({"cosine", None})], "augment": [bool]}
>>> validate_params(constraints, {"lr": 1e-3, "n_threads": None, "lr_schedule": "cosine",
...                               "augment": True})
>>> validate_params(constraints, {"lr": "fast"})
Traceback (most recent call last):
...
bmdkit.errors.ParameterError: lr must be a number > 0, got 'fast'
>>> validate_params(constraints, {"n_threads": 0})
Traceback (most recent call last):
...
bmdkit.errors.ParameterError: n_threads must be None or an integer >= 1, got 0
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from bmdkit.errors import ParameterError

__all__ = ["Check", "Interval", "Options", "bad_values", "check_param", "describe",
           "validate_params"]


@dataclass(frozen=True)
class Interval:
    """Numbers of ``kind`` (``numbers.Integral`` or ``numbers.Real``) between two bounds.

    ``left`` / ``right``: a bound, or None for none; ``closed``: which bounds
    belong to the interval, ``"both"`` (default), ``"left"``, ``"right"`` or
    ``"neither"``. A bool is never a number here.
    """

    kind: type
    left: float | None
    right: float | None
    closed: str = "both"

    def accepts(self, value):
        if isinstance(value, bool) or not isinstance(value, self.kind):
            return False
        if self.kind is not numbers.Integral and not math.isfinite(value):
            return False
        left_ok = self.left is None or (
            value >= self.left if self.closed in ("both", "left") else value > self.left)
        right_ok = self.right is None or (
            value <= self.right if self.closed in ("both", "right") else value < self.right)
        return left_ok and right_ok

    def __str__(self):
        noun = "an integer" if self.kind is numbers.Integral else "a number"
        low = "[" if self.closed in ("both", "left") else "("
        high = "]" if self.closed in ("both", "right") else ")"
        if self.left is not None and self.right is not None:
            return f"{noun} in {low}{self.left}, {self.right}{high}"
        if self.left is not None:
            return f"{noun} {'>=' if low == '[' else '>'} {self.left}"
        if self.right is not None:
            return f"{noun} {'<=' if high == ']' else '<'} {self.right}"
        return noun

    def bad(self):
        """Values this interval refuses: a wrong type, and one outside each bound."""
        bad = ["text"]
        step = 1 if self.kind is numbers.Integral else 0.5
        if self.left is not None:
            bad.append(self.left if self.closed in ("right", "neither") else self.left - step)
        if self.right is not None:
            bad.append(self.right if self.closed in ("left", "neither") else self.right + step)
        return bad


@dataclass(frozen=True)
class Options:
    """One of a few values (``None`` may be one of them)."""

    values: frozenset

    def __init__(self, values):
        object.__setattr__(self, "values", frozenset(values))

    def accepts(self, value):
        if isinstance(value, bool):  # True == 1: a bool is an option only when listed
            return any(value is option for option in self.values)
        try:
            return value in self.values
        except TypeError:  # an unhashable value
            return False

    def __str__(self):
        return "one of " + ", ".join(sorted(map(repr, self.values)))

    def bad(self):
        return ["no such option", 3]


@dataclass(frozen=True)
class Check:
    """A check by a function: ``function(value)`` raises a ParameterError naming the parameter.

    For a value whose check needs a library (a timm model name, a torch device).
    ``description`` says in words what passes (:func:`describe`), or is a function
    giving it (for a registry that grows, e.g. the fusions); ``bad_examples``
    are values the function refuses (:func:`bad_values`). Any other error the
    function raises (a ``TypeError`` of an unhashable value, ...) becomes the
    ParameterError of the message pattern.
    """

    function: object
    description: str
    bad_examples: tuple = ()

    def __str__(self):
        return self.description() if callable(self.description) else self.description

    def bad(self):
        return list(self.bad_examples)


def _accepts(constraint, value):
    if constraint is None:
        return value is None
    if isinstance(constraint, type):
        return isinstance(value, constraint) and not (
            constraint is not bool and isinstance(value, bool)
            and issubclass(constraint, numbers.Number))
    return constraint.accepts(value)


def _describe_one(constraint):
    if constraint is None:
        return "None"
    if constraint is bool:
        return "a bool (True or False)"
    if isinstance(constraint, type):
        return f"a {constraint.__name__}"
    return str(constraint)


def describe(constraints):
    """What a constraint list accepts, in words: ``"None or an integer >= 1"``.

    Examples
    --------
    >>> describe([None, Interval(numbers.Integral, 1, None)])
    'None or an integer >= 1'
    """
    return " or ".join(_describe_one(c) for c in constraints)


def validate_params(constraints, params, *, skip=()):
    """Check each of ``params`` ({name: value}) against its list in ``constraints``.

    Raises one :class:`~bmdkit.errors.ParameterError` for the first value that
    meets none of its constraints: ``"<name> must be <what passes>, got
    <value!r>"``. A parameter without constraints is an error too (the table
    must be complete); names in ``skip`` are not checked (e.g. ``callbacks``,
    which skorch checks).
    """
    for name, value in params.items():
        if name in skip:
            continue
        if name not in constraints:
            raise ParameterError(f"{name} has no declared constraint (add it to the table)")
        allowed = constraints[name]
        if any(_accepts(c, value) for c in allowed if not isinstance(c, Check)):
            continue
        only = len(allowed) == 1
        if not any(_passes(check, value, only) for check in allowed if isinstance(check, Check)):
            raise ParameterError(f"{name} must be {describe(allowed)}, got {value!r}")


def _passes(check, value, only=False):
    """Whether ``check`` passes ``value``; its own ParameterError when it is the only constraint
    (``only``), as it says more than the message pattern."""
    try:
        check.function(value)
    except ParameterError:
        if only:
            raise
        return False
    except Exception:  # noqa: BLE001 - any failure of a check (unhashable ...) is a bad value
        return False
    return True


def check_param(name, value, *constraints):
    """``value`` if it meets one of ``constraints``, else the ParameterError of :func:`validate_params`.

    For a function's argument checked where it is used (``contrast``, ``precision``,
    ``confidence``): the same constraints and message as an estimator's table.

    Examples
    --------
    >>> check_param("confidence", 0.9, Interval(numbers.Real, 0, 1, closed="neither"))
    0.9
    >>> check_param("contrast", "gamma", Options({"percentile", "minmax", "none"}))
    Traceback (most recent call last):
    ...
    bmdkit.errors.ParameterError: contrast must be one of 'minmax', 'none', 'percentile', got 'gamma'
    """
    validate_params({name: list(constraints)}, {name: value})
    return value


def bad_values(constraints):
    """Values that no constraint of the list ``constraints`` accepts (for tests).

    Examples
    --------
    >>> bad_values([None, Interval(numbers.Integral, 1, None)])
    ['text', 0]
    >>> bad_values([bool])
    ['yes', 1]
    """
    candidates = []
    for constraint in constraints:
        if constraint is bool:
            candidates += ["yes", 1]
        elif constraint is str:
            candidates += [3]
        elif isinstance(constraint, type):
            candidates += ["text"]
        elif constraint is not None:
            candidates += constraint.bad()
    seen, bad = set(), []
    for value in candidates:
        key = (type(value), repr(value))
        if key in seen or any(_accepts(c, value) for c in constraints
                              if not isinstance(c, Check)):
            continue
        seen.add(key)
        bad.append(value)
    return bad
