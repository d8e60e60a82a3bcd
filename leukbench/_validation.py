"""Parameter checks of the public functions, declared in one place with one message format.

Modelled on scikit-learn's ``utils/_param_validation.py``: a function lists
the constraints of its parameters, :func:`validate_params` checks them all and
raises :class:`~leukbench.exceptions.InvalidParameterError` with the message
``"<name> must be <what it may be> (got <value>)"``. The command line shows the
same message with its flag in place of the parameter name.

Example
-------
>>> from leukbench._validation import Interval, Options, validate_params
>>> validate_params({"cv": 5, "split": "cv"},
...                 {"cv": [Interval(int, 2, None)], "split": [Options("cv", "predefined")]})
>>> validate_params({"cv": 1}, {"cv": [Interval(int, 2, None)]})
Traceback (most recent call last):
...
leukbench.exceptions.InvalidParameterError: cv must be an integer of at least 2 (got 1)
"""

from __future__ import annotations

import numbers
from typing import Any, Dict, Mapping, Optional, Sequence

from .exceptions import InvalidParameterError

__all__ = ["Interval", "Options", "validate_params", "invalid"]


class Interval:
    """Numbers of ``kind`` (``int`` or ``float``) in ``[low, high]``; ``None`` is unbounded.

    ``open_low=True`` excludes ``low`` itself (``Interval(float, 0, None,
    open_low=True)`` is "a positive number").
    """

    def __init__(self, kind: type, low: Optional[float], high: Optional[float], *,
                 open_low: bool = False):
        self.kind, self.low, self.high, self.open_low = kind, low, high, open_low

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool):
            return False
        base = numbers.Integral if self.kind is int else numbers.Real
        if not isinstance(value, base):
            return False
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return False
        return self.high is None or value <= self.high

    def describe(self) -> str:
        noun = "an integer" if self.kind is int else "a number"
        if self.low is not None and self.high is not None:
            return f"{noun} from {self.low} to {self.high}"
        if self.low is not None:
            if self.open_low:
                return f"{noun} greater than {self.low}"
            return f"{noun} of at least {self.low}"
        if self.high is not None:
            return f"{noun} of at most {self.high}"
        return noun


class Options:
    """One of the given strings (compared without regard to case when ``ignore_case``)."""

    def __init__(self, *values: str, ignore_case: bool = False):
        self.values, self.ignore_case = tuple(values), ignore_case

    def accepts(self, value: Any) -> bool:
        if not isinstance(value, str):
            return False
        if self.ignore_case:
            return value.lower() in {v.lower() for v in self.values}
        return value in self.values

    def describe(self) -> str:
        quoted = [repr(v) for v in self.values]
        if len(quoted) == 1:
            return quoted[0]
        return "one of " + ", ".join(quoted)


class _IsNone:
    def accepts(self, value: Any) -> bool:
        return value is None

    def describe(self) -> str:
        return "None"


class _InstanceOf:
    def __init__(self, kind: type):
        self.kind = kind

    def accepts(self, value: Any) -> bool:
        return isinstance(value, self.kind) and not (self.kind is int and isinstance(value, bool))

    def describe(self) -> str:
        return f"a {self.kind.__name__}"


def _constraint(c):
    if c is None:
        return _IsNone()
    if isinstance(c, type):
        return _InstanceOf(c)
    return c


def invalid(name: str, requirement: str) -> InvalidParameterError:
    """The error for parameter ``name``: ``"<name> <requirement>"``.

    Example
    -------
    >>> str(invalid("cv", "must be at least 2 (got 1)"))
    'cv must be at least 2 (got 1)'
    """
    return InvalidParameterError(f"{name} {requirement}", parameter=name, requirement=requirement)


def validate_params(params: Mapping[str, Any], constraints: Dict[str, Sequence[Any]]) -> None:
    """Check each of ``params`` named in ``constraints`` against its allowed values.

    A parameter passes when any of its constraints accepts it: an
    :class:`Interval`, :class:`Options`, a type, or ``None`` (the value
    ``None`` is allowed).

    Raises
    ------
    InvalidParameterError
        Naming the first parameter that fails, what it may be and what it got.
    """
    for name, allowed in constraints.items():
        if name not in params:
            continue
        value = params[name]
        checks = [_constraint(c) for c in allowed]
        if any(c.accepts(value) for c in checks):
            continue
        wanted = " or ".join(c.describe() for c in checks)
        raise invalid(name, f"must be {wanted} (got {value!r})")
