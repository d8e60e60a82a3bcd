"""Subject ids from file names: the user's ``subject_regex``, else the C-NMC pattern."""

from __future__ import annotations

import re
from typing import Optional

from ..exceptions import DatasetError, InvalidParameterError

#: C-NMC file names: ``UID_<subject>_<image>_<cell>_<class>.<ext>``.
CNMC_NAME = re.compile(r"^UID_(?P<subject>[^_]+)_\d+_\d+_(?P<cls>all|hem)\.", re.IGNORECASE)


class _SubjectRegexError(InvalidParameterError, DatasetError):
    """A ``subject_regex`` that cannot take subject ids out of file names.

    Both a bad parameter (the command line names its flag) and, as before, a
    :class:`DatasetError`.
    """


def _subject_regex_error(requirement: str) -> _SubjectRegexError:
    return _SubjectRegexError(f"subject_regex {requirement}", parameter="subject_regex", requirement=requirement)


def subject_from_name(name: str, subject_regex: Optional[re.Pattern] = None) -> str:
    r"""Subject id from a file name: the user's regex first, then the C-NMC pattern.

    A name the regex does not match falls back to the C-NMC pattern
    ``UID_<subject>_...``; a name that matches neither gives ``""``.

    Parameters
    ----------
    name : str
        File name (not the whole path).
    subject_regex : compiled regex, optional
        Must have a named group ``subject`` or one capturing group.

    Example
    -------
    >>> import re
    >>> subject_from_name("UID_H12_3_1_hem.bmp")
    'H12'
    >>> subject_from_name("P07-cell.png", re.compile(r"^(P\d+)-"))
    'P07'
    >>> subject_from_name("cell.png")
    ''
    """
    if subject_regex is not None:
        m = subject_regex.search(name)
        if m:
            subject = m.group("subject") if "subject" in m.groupdict() else m.group(1)
            return subject or ""  # an optional group that did not take part gives None
    m = CNMC_NAME.match(name)
    return m.group("subject") if m else ""


def compile_subject_regex(subject_regex) -> Optional[re.Pattern]:
    """``subject_regex`` compiled (``None`` stays ``None``); it needs a capturing group."""
    if subject_regex is None or isinstance(subject_regex, re.Pattern):
        return subject_regex
    try:
        rx = re.compile(subject_regex)
    except re.error as exc:
        raise _subject_regex_error(f"{subject_regex!r} is not a valid regex: {exc}") from None
    if rx.groups < 1:
        raise _subject_regex_error(
            f"{subject_regex!r} has no capturing group; "
            r"write e.g. '^(?P<subject>[A-Za-z0-9]+)_' so the subject id can be taken from it"
        )
    return rx
