"""Feature specs: ``"a,b,a+b"`` -> the feature sets to build, checked for repeated columns."""

from __future__ import annotations

from typing import List, Sequence, Union

from ..exceptions import InvalidParameterError
from ..features.base import column_groups

#: What ``features=`` defaults to.
DEFAULT_FEATURES = "efficientnet_lite0"


def parse_feature_spec(spec: Union[str, Sequence[str], None]) -> List[List[str]]:
    """Parse ``"a,b,a+b"`` into feature sets ``[["a"], ["b"], ["a", "b"]]``.

    Raises
    ------
    InvalidParameterError
        For an empty name, a part named twice or two parts that share columns
        (``morphology+handcrafted``).

    Example
    -------
    >>> parse_feature_spec("a,b,a+b")
    [['a'], ['b'], ['a', 'b']]
    """
    if spec is None or spec == "":
        spec = DEFAULT_FEATURES
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    sets = []
    for item in items:
        if not str(item).strip():
            continue
        parts = [p.strip() for p in str(item).split("+")]
        if not all(parts):
            raise InvalidParameterError(f"feature set {str(item).strip()!r} has an empty name; "
                                        "write a+b to combine two extractors")
        _check_no_shared_columns("+".join(parts), parts)
        if parts not in sets:
            sets.append(parts)
    if not sets:
        raise InvalidParameterError(f"no feature extractor named in {spec!r}")
    return sets


def _check_no_shared_columns(item: str, parts: Sequence[str]) -> None:
    """Refuse ``a+a`` and two parts that share columns (a handcrafted group combined
    with ``handcrafted``): either would give the feature set the same columns twice."""
    for i, a in enumerate(parts):
        for b in parts[i + 1:]:
            if a == b:
                raise InvalidParameterError(f"feature set {item!r} names {a} twice; write it once")
            groups_a, groups_b = column_groups(a), column_groups(b)
            if groups_a & groups_b:
                whole, part = (a, b) if groups_a >= groups_b else (b, a)
                raise InvalidParameterError(f"feature set {item!r} has the {part} columns twice (they are "
                                            f"part of {whole}); use {whole} alone")
