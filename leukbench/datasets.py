"""Discover images, labels and subject ids into one tidy table.

Every loader returns a :class:`pandas.DataFrame` with one row per image and the
columns of :data:`COLUMNS`:

``path``    absolute path of the image file (str)
``id``      path relative to the dataset root, POSIX separators (the image key)
``label``   class label (str; ``""`` for unlabeled images)
``subject`` subject / patient id (str; ``""`` when unknown)
``split``   ``"train"``, ``"test"`` or ``"unlabeled"``
``fold``    original fold of the data set (str; ``""`` when none)

Three layouts are understood, picked automatically by :func:`discover` or by
name: class folders (``root/<class>/.../<image>``), the C-NMC 2019 release
(``training_data/fold_k/{all,hem}``, the preliminary test set with its labels
CSV and the unlabeled final test set) and a CSV manifest
(``path,label[,subject][,split]``).
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple

import pandas as pd

from .exceptions import DatasetError
from .images import IMAGE_EXTENSIONS, is_image_file

COLUMNS = ["path", "id", "label", "subject", "split", "fold"]
LAYOUTS = ("auto", "folders", "cnmc", "manifest")

#: C-NMC file names: ``UID_<subject>_<image>_<cell>_<class>.<ext>``.
CNMC_NAME = re.compile(r"^UID_(?P<subject>[^_]+)_\d+_\d+_(?P<cls>all|hem)\.", re.IGNORECASE)
_CNMC_TRAIN_DIRS = ("training_data", "C-NMC_training_data")
#: A C-NMC training fold folder: ``fold_0``, ``fold_1``, ...
_FOLD_DIR = re.compile(r"^fold_\d+$", re.IGNORECASE)
_SPLITS = ("train", "test", "unlabeled")
_ACCEPTED = ", ".join(sorted(IMAGE_EXTENSIONS))




# ---------------------------------------------------------------------------
# walking
# ---------------------------------------------------------------------------


def _dir_key(path) -> Optional[Tuple[int, int]]:
    """``(st_dev, st_ino)`` of the directory at ``path`` (symlinks followed); None if unreadable."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _is_dir(entry: os.DirEntry) -> bool:
    """``entry.is_dir()`` following symlinks; False for broken or looping links."""
    try:
        return entry.is_dir(follow_symlinks=True)
    except OSError:
        return False


def _subdirs(root: str) -> List[os.DirEntry]:
    """Non-hidden sub-folders of ``root`` (symlinks to folders included), sorted by name."""
    with os.scandir(root) as it:
        return sorted((e for e in it if not e.name.startswith(".") and _is_dir(e)), key=lambda e: e.name)


def _walk_images(top: str, seen: Optional[Set[Tuple[int, int]]] = None) -> Iterator[str]:
    """Yield absolute paths of image files below ``top`` (skips hidden entries).

    Parameters
    ----------
    top : str
        Folder to walk; it is walked even when already in ``seen``.
    seen : set, optional
        ``(st_dev, st_ino)`` of folders already walked or to be walked by the
        caller; shared between calls so a symlink back up the tree (a loop) or
        to another walked folder is skipped. A symlinked folder seen for the
        first time is followed.
    """
    seen = set() if seen is None else seen
    key = _dir_key(top)
    if key is not None:
        seen.add(key)
    stack = [top]
    while stack:
        d = stack.pop()
        try:
            with os.scandir(d) as it:
                for entry in it:
                    if entry.name.startswith("."):
                        continue
                    if _is_dir(entry):
                        key = _dir_key(entry.path)  # one stat per folder, none per file
                        if key is None or key in seen:
                            continue
                        seen.add(key)
                        stack.append(entry.path)
                    elif is_image_file(entry.name):
                        yield entry.path
        except PermissionError:
            raise DatasetError(f"{d}: permission denied; make the folder readable") from None
        except OSError as exc:
            raise DatasetError(f"{d}: cannot list the folder ({exc.strerror}); check the path and its links") from None


def _rel(path: str, root: str) -> str:
    return os.path.relpath(path, root).replace(os.sep, "/")


def subject_from_name(name: str, subject_regex: Optional[re.Pattern] = None) -> str:
    """Subject id from a file name: the user's regex first, then the C-NMC pattern.

    A name the regex does not match falls back to the C-NMC pattern
    ``UID_<subject>_...``; a name that matches neither gives ``""``.

    Parameters
    ----------
    name : str
        File name (not the whole path).
    subject_regex : compiled regex, optional
        Must have a named group ``subject`` or one capturing group.
    """
    if subject_regex is not None:
        m = subject_regex.search(name)
        if m:
            subject = m.group("subject") if "subject" in m.groupdict() else m.group(1)
            return subject or ""  # an optional group that did not take part gives None
    m = CNMC_NAME.match(name)
    return m.group("subject") if m else ""


def _compile_subject_regex(subject_regex) -> Optional[re.Pattern]:
    if subject_regex is None or isinstance(subject_regex, re.Pattern):
        return subject_regex
    try:
        rx = re.compile(subject_regex)
    except re.error as exc:
        raise DatasetError(f"--subject-regex {subject_regex!r} is not a valid regex: {exc}") from None
    if rx.groups < 1:
        raise DatasetError(
            f"--subject-regex {subject_regex!r} has no capturing group; "
            r"write e.g. '^(?P<subject>[A-Za-z0-9]+)_' so the subject id can be taken from it"
        )
    return rx


def _frame(rows: List[Tuple[str, str, str, str, str, str]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=COLUMNS)
    df = df.sort_values("id", kind="stable").reset_index(drop=True)
    return df


def _subjects_for(names, rx) -> List[str]:
    return [subject_from_name(n, rx) for n in names]


# ---------------------------------------------------------------------------
# layouts
# ---------------------------------------------------------------------------


def load_folders(root, subject_regex=None) -> pd.DataFrame:
    """Class-folder layout: ``root/<class>/**/<image>``; all images are ``train``."""
    root = _check_root(root)
    rx = _compile_subject_regex(subject_regex)
    rows = []
    classes = [e.name for e in _subdirs(root)]
    # the root and every class folder count as seen, so a link from one class into
    # another (or back up to the root) is not walked twice under the wrong label
    seen = {k for k in map(_dir_key, [root] + [os.path.join(root, c) for c in classes]) if k is not None}
    for cls in classes:
        for p in _walk_images(os.path.join(root, cls), seen):
            name = os.path.basename(p)
            rows.append((p, _rel(p, root), cls, subject_from_name(name, rx), "train", ""))
    if not rows:
        loose = [e for e in os.listdir(root) if is_image_file(e)]
        hint = (
            f"found {len(loose)} images directly in it; move them into one sub-folder per class"
            if loose
            else f"put the images ({_ACCEPTED}) in one sub-folder per class, e.g. all/ and hem/"
        )
        raise DatasetError(f"{root}: no images found in class folders; {hint}")
    return _frame(rows)


def _fold_dirs(root: str) -> Tuple[List[str], List[str]]:
    """Names of the sub-folders of ``root`` that are / are not ``fold_<n>`` folders."""
    names = [e.name for e in _subdirs(root)]
    return [n for n in names if _FOLD_DIR.match(n)], [n for n in names if not _FOLD_DIR.match(n)]


def _is_fold_root(root: str) -> bool:
    """True when all sub-folders of ``root`` are ``fold_<n>`` (C-NMC ``training_data/`` itself)."""
    folds, others = _fold_dirs(root)
    return bool(folds) and not others


def _find_cnmc_parts(root: str):
    """Training, preliminary-test and final-test folders of a C-NMC root (None where absent).

    ``root`` may be the release folder or its training folder itself (all of
    whose sub-folders are ``fold_<n>``); then it is the training part.
    """
    train = next((os.path.join(root, d) for d in _CNMC_TRAIN_DIRS if os.path.isdir(os.path.join(root, d))), None)
    if train is None and _is_fold_root(root):
        return root, None, None
    val = os.path.join(root, "validation_data")
    test = os.path.join(root, "testing_data")
    return train, (val if os.path.isdir(val) else None), (test if os.path.isdir(test) else None)


def _nested_cnmc_root(root: str) -> Optional[str]:
    """The sole sub-folder of ``root`` when it is a C-NMC root (``root`` is one level too high)."""
    subs = _subdirs(root)
    if len(subs) == 1 and _find_cnmc_parts(subs[0].path)[0] is not None:
        return subs[0].path
    return None


def load_cnmc(root, subject_regex=None) -> pd.DataFrame:
    """The C-NMC 2019 release layout (see ``../shared/data/README.md``).

    Training folds become ``split="train"`` with their ``fold``; the
    preliminary test set, labelled by its CSV, becomes ``"test"`` (subjects
    from the CSV's ``Patient_ID`` original names); the final test set is
    ``"unlabeled"``. ``root`` may also be the training folder itself
    (``training_data/``, whose sub-folders are all ``fold_<n>``).
    """
    root = _check_root(root)
    rx = _compile_subject_regex(subject_regex)
    train, val, test = _find_cnmc_parts(root)
    if train is None:
        nested = _nested_cnmc_root(root)
        if nested is not None:
            raise DatasetError(f"{root}: the C-NMC release is one level down; pass {nested} instead")
        raise DatasetError(
            f"{root}: not a C-NMC release (no training_data/, C-NMC_training_data/ or fold_* folders); "
            "use --layout folders for class sub-folders"
        )
    seen = {k for k in map(_dir_key, (d for d in (root, train, val, test) if d)) if k is not None}
    rows = []
    for p in _walk_images(train, seen):
        rel = _rel(p, root)
        parts = rel.split("/")
        fold = next((s for s in parts if s.lower().startswith("fold_")), "")
        name = parts[-1]
        cls = next((s.lower() for s in reversed(parts[:-1]) if s.lower() in ("all", "hem")), "")
        if not cls:
            m = CNMC_NAME.match(name)
            cls = m.group("cls").lower() if m else ""
        if not cls:
            continue  # not part of the class structure (a stray image)
        rows.append((p, rel, cls, subject_from_name(name, rx), "train", fold))
    if val is not None:
        rows += _cnmc_prelim(root, val, rx, seen)
    if test is not None:
        for p in _walk_images(test, seen):
            rows.append((p, _rel(p, root), "", "", "unlabeled", ""))
    if not any(r[4] == "train" for r in rows):
        raise DatasetError(
            f"{train}: no images in the C-NMC training folds (expected fold_*/all and fold_*/hem); "
            "for other class names write a CSV manifest"
        )
    return _frame(rows)


def _cnmc_prelim(root: str, val: str, rx, seen) -> list:
    csvs = sorted(Path(val).glob("*labels*.csv"))
    images = list(_walk_images(val, seen))
    if not images:
        return []
    if not csvs:
        return [(p, _rel(p, root), "", "", "unlabeled", "") for p in images]
    csv = csvs[0]
    try:
        lab = pd.read_csv(csv, dtype=str)
    except Exception as exc:  # noqa: BLE001 - any parse error becomes one clear line
        raise DatasetError(f"{csv}: cannot read the labels CSV ({exc}); check it is a comma-separated file") from None
    need = {"Patient_ID", "new_names", "labels"}
    if not need <= set(lab.columns):
        raise DatasetError(f"{csv}: expected columns Patient_ID,new_names,labels; found {', '.join(lab.columns)}")
    by_name = {str(r.new_names).strip(): r for r in lab.itertuples(index=False)}
    rows = []
    for p in images:
        r = by_name.get(os.path.basename(p))
        if r is None:
            rows.append((p, _rel(p, root), "", "", "unlabeled", ""))
            continue
        label = {"1": "all", "0": "hem"}.get(str(r.labels).strip(), str(r.labels).strip().lower())
        subj = subject_from_name(str(r.Patient_ID).strip(), rx)
        rows.append((p, _rel(p, root), label, subj, "test", ""))
    return rows


def load_manifest(csv_path, subject_regex=None) -> pd.DataFrame:
    """A CSV manifest with columns ``path,label[,subject][,split]``.

    Paths are relative to the CSV's folder, which is the dataset root; a path
    that is missing or points outside that folder is an error naming the row.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DatasetError(f"{csv_path}: manifest not found; give the path of a CSV with columns path,label")
    root = str(csv_path.resolve().parent)
    rx = _compile_subject_regex(subject_regex)
    try:
        man = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except Exception as exc:  # noqa: BLE001
        raise DatasetError(
            f"{csv_path}: cannot read the manifest ({exc}); it must be a CSV with a header row"
        ) from None
    man.columns = [c.strip().lower() for c in man.columns]
    missing = {"path", "label"} - set(man.columns)
    if missing:
        raise DatasetError(
            f"{csv_path}: manifest lacks column(s) {', '.join(sorted(missing))}; "
            f"expected path,label[,subject][,split], found {', '.join(man.columns)}"
        )
    rows = []
    first_line: Dict[str, int] = {}  # image -> the manifest line that listed it first
    for i, r in enumerate(man.to_dict("records"), start=2):  # row 1 is the header
        rel = str(r["path"]).strip()
        full = os.path.normpath(os.path.join(root, rel))
        if os.path.commonpath([full, root]) != root:
            raise DatasetError(
                f"{csv_path}:{i}: {rel!r} points outside the dataset root {root}; "
                "manifest paths must be relative to the CSV's folder and stay below it"
            )
        if os.path.isdir(full):
            raise DatasetError(f"{csv_path}:{i}: {rel!r} is a folder, not an image; list one image file per row")
        if not os.path.isfile(full):
            raise DatasetError(f"{csv_path}:{i}: image {rel!r} does not exist; fix the path or remove the row")
        if full in first_line:
            raise DatasetError(f"{csv_path}:{i}: image {rel!r} is already listed on line {first_line[full]}; "
                               "list each image once (one label, one subject, one split)")
        first_line[full] = i
        label = str(r["label"]).strip()
        subj = str(r.get("subject", "") or "").strip() or subject_from_name(os.path.basename(full), rx)
        split = str(r.get("split", "") or "").strip().lower() or ("train" if label else "unlabeled")
        if split not in _SPLITS:
            raise DatasetError(f"{csv_path}:{i}: split {split!r} is not one of {', '.join(_SPLITS)}")
        rows.append((full, _rel(full, root), label, subj, split, ""))
    if not rows:
        raise DatasetError(f"{csv_path}: the manifest has no rows; add one line per image: path,label")
    return _frame(rows)


# ---------------------------------------------------------------------------
# entry points
# ---------------------------------------------------------------------------


def _check_root(root) -> str:
    root = os.path.abspath(os.fspath(root))
    if not os.path.exists(root):
        raise DatasetError(f"{root}: no such folder; give the folder that holds the class sub-folders")
    if not os.path.isdir(root):
        raise DatasetError(f"{root}: not a folder; pass a folder, or a .csv manifest")
    return root


def _names(paths, k: int = 4) -> str:
    """Comma-separated base names, the first ``k`` and a count of the rest."""
    names = [os.path.basename(p) for p in paths]
    more = f" and {len(names) - k} more" if len(names) > k else ""
    return ", ".join(names[:k]) + more


def _root_csvs(root: str) -> List[str]:
    """Non-hidden ``.csv`` files directly in ``root``, sorted."""
    with os.scandir(root) as it:
        named = [e for e in it if not e.name.startswith(".") and e.name.lower().endswith(".csv")]
    return sorted(e.path for e in named if os.path.isfile(e.path))  # isfile: False for looping links


def _csv_header(path: str) -> List[str]:
    """Lower-cased column names of a CSV's first line; ``[]`` when unreadable."""
    try:
        with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
            first = next(csv.reader(fh), [])
    except (OSError, csv.Error):
        return []
    return [c.strip().lower() for c in first]


def _manifests_in(root: str) -> List[str]:
    """CSV files directly in ``root`` whose header has ``path`` and ``label`` columns."""
    return [c for c in _root_csvs(root) if {"path", "label"} <= set(_csv_header(c))]


def detect_layout(data) -> str:
    """Guess the layout of ``data``: ``"manifest"``, ``"cnmc"`` or ``"folders"``.

    In order: a ``.csv`` file is a manifest; a folder is C-NMC when it holds
    ``training_data/`` (or ``C-NMC_training_data/``) or when all its
    sub-folders are ``fold_<n>``; a manifest when it holds exactly one CSV
    whose header has ``path`` and ``label``; else class folders. Folders one
    level above a C-NMC release, with no images or with several manifests
    raise :class:`DatasetError`.
    """
    p = Path(data)
    if p.suffix.lower() == ".csv" and not p.exists():
        raise DatasetError(f"{p}: no such manifest; give the path of a CSV with columns path,label")
    if p.is_file():
        if p.suffix.lower() == ".csv":
            return "manifest"
        raise DatasetError(f"{p}: a file that is not a .csv manifest; pass an image folder or a CSV manifest")
    root = _check_root(p)
    # 1. C-NMC: the release folder, or its training folder (all sub-folders fold_<n>)
    if _find_cnmc_parts(root)[0] is not None:
        return "cnmc"
    # 2. a CSV manifest (header with path and label) in the folder, even beside image folders
    manifests = _manifests_in(root)
    if len(manifests) > 1:
        raise DatasetError(
            f"{root}: several CSV manifests ({_names(manifests)}); pass the one to use, "
            f"e.g. {manifests[0]}, or --layout folders to ignore them"
        )
    if manifests:
        return "manifest"
    # 3. class folders
    folds, others = _fold_dirs(root)
    if folds or others:
        nested = _nested_cnmc_root(root)
        if nested is not None:
            raise DatasetError(
                f"{root}: holds only the C-NMC release folder {os.path.basename(nested)}/; pass {nested} instead"
            )
        if folds:
            raise DatasetError(
                f"{root}: sub-folders mix C-NMC folds ({_names(folds)}) with other folders ({_names(others)}); "
                "pass a folder whose sub-folders are all fold_<n>, or all class folders"
            )
        return "folders"
    # 4. no sub-folders: a lone CSV is the manifest (load_manifest names missing columns)
    csvs = _root_csvs(root)
    if len(csvs) == 1:
        return "manifest"
    loose = [e for e in os.listdir(root) if is_image_file(e)]
    if loose:
        raise DatasetError(
            f"{root}: {len(loose)} images lie directly in the folder; move them into one sub-folder per class "
            "(e.g. all/ and hem/) or list them in a CSV manifest with columns path,label"
        )
    if csvs:
        raise DatasetError(
            f"{root}: no images and no class sub-folders, and none of its {len(csvs)} CSV files has columns "
            "path,label; pass the CSV manifest itself"
        )
    raise DatasetError(
        f"{root}: the folder holds no images ({_ACCEPTED}); put them in one sub-folder per class, "
        "e.g. all/ and hem/, or pass a CSV manifest"
    )


def discover(data, layout: str = "auto", subject_regex=None, require_labels: bool = True) -> pd.DataFrame:
    """Find images, labels and subjects under ``data``.

    Parameters
    ----------
    data : str or Path
        A dataset folder, or a CSV manifest.
    layout : {"auto", "folders", "cnmc", "manifest"}
        ``"auto"`` picks one with :func:`detect_layout`.
    subject_regex : str, optional
        Regex with a capturing group (or ``(?P<subject>...)``) that takes the
        subject id out of each file name; names it does not match, and all
        names by default, give their subject by the C-NMC pattern
        ``UID_<subject>_...`` (else ``""``).
    require_labels : bool
        Check there are at least two classes among the labeled images.

    Returns
    -------
    DataFrame with the columns of :data:`COLUMNS`, sorted by ``id``.

    Raises
    ------
    DatasetError
        With a one-line message naming the path and the fix.
    """
    if layout not in LAYOUTS:
        raise DatasetError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if layout == "auto":
        layout = detect_layout(data)
    if layout == "manifest":
        p = Path(data)
        if p.is_dir():
            manifests, csvs = _manifests_in(str(p)), _root_csvs(str(p))
            if len(manifests) == 1 or (not manifests and len(csvs) == 1):
                p = Path((manifests or csvs)[0])
            else:
                raise DatasetError(
                    f"{p}: expected one CSV manifest (columns path,label) in the folder, found {len(manifests)} "
                    f"among {len(csvs)} CSV files; pass the CSV itself"
                )
        df = load_manifest(p, subject_regex)
        root = str(p.resolve().parent)
    elif layout == "cnmc":
        df = load_cnmc(data, subject_regex)
        root = _check_root(data)
    else:
        df = load_folders(data, subject_regex)
        root = _check_root(data)
    df.attrs["root"] = root
    df.attrs["layout"] = layout
    where = p if layout == "manifest" else root
    _check_label_case(df, where)
    if require_labels:
        check_labels(df, where)
    return df


def _check_label_case(df: pd.DataFrame, where) -> None:
    """Labels that differ only in case (``ALL`` and ``all``) are one class misspelt."""
    spellings: dict = {}
    for label in sorted(set(df["label"]) - {""}):
        spellings.setdefault(label.casefold(), []).append(label)
    clash = next((v for v in spellings.values() if len(v) > 1), None)
    if clash:
        fix = ("write them the same in the label column" if df.attrs.get("layout") == "manifest"
               else "merge the folders into one")
        raise DatasetError(f"{where}: labels {' and '.join(map(repr, clash))} differ only in case; "
                           f"if they are one class, {fix}")


def check_labels(df: pd.DataFrame, where) -> None:
    """Raise :class:`DatasetError` unless the labeled images span two classes or more."""
    classes = sorted(set(df.loc[df["label"] != "", "label"]))
    if len(classes) >= 2:
        return
    found = f"only class {classes[0]!r}" if classes else "no labeled images"
    layout = df.attrs.get("layout")
    if layout == "manifest":
        hint = "give the manifest's label column two classes or more"
    else:
        hint = "put each class in its own sub-folder, e.g. all/ and hem/"
        root = df.attrs.get("root")
        if layout == "folders" and root and os.path.isdir(root):
            empty = [e.name for e in _subdirs(root) if e.name not in classes]
            if empty:
                hint = f"{', '.join(f'{n}/' for n in empty)} holds no images; " + hint
            elif len(classes) == 1:
                inner = sorted(e.name for e in _subdirs(os.path.join(root, classes[0])))
                if len(inner) >= 2:  # one level too high: the classes are one folder down
                    hint = (f"{classes[0]}/ holds the folders {', '.join(inner[:4])}; if they are the "
                            f"classes, pass {os.path.join(root, classes[0])}")
    raise DatasetError(f"{where}: {found}; a comparison needs at least two classes: {hint}")


def sample_root() -> Path:
    """Folder of the bundled C-NMC sample (class folders ``all/`` and ``hem/``)."""
    return Path(__file__).resolve().parent / "data" / "sample"


def load_sample() -> pd.DataFrame:
    """The bundled sample: real C-NMC 2019 cells of 16 subjects (8 ALL, 8 healthy).

    Credit: C-NMC 2019 (SBI Lab, IIIT-Delhi / AIIMS New Delhi), CC BY 3.0.
    """
    return discover(sample_root(), layout="folders")


def summarize(df: pd.DataFrame) -> str:
    """One line: images, classes with counts, subjects, splits."""
    counts = df.loc[df["label"] != "", "label"].value_counts().sort_index()
    cls = ", ".join(f"{k} {v}" for k, v in counts.items())
    n_subj = df.loc[df["subject"] != "", "subject"].nunique()
    splits = ", ".join(f"{k} {v}" for k, v in df["split"].value_counts().sort_index().items())
    subj = f"{n_subj} subjects" if n_subj else "no subject ids"
    return f"{len(df)} images ({cls}); {subj}; splits: {splits}"
