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

import os
import re
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import pandas as pd

from .images import is_image_file

COLUMNS = ["path", "id", "label", "subject", "split", "fold"]
LAYOUTS = ("auto", "folders", "cnmc", "manifest")

#: C-NMC file names: ``UID_<subject>_<image>_<cell>_<class>.<ext>``.
CNMC_NAME = re.compile(r"^UID_(?P<subject>[^_]+)_\d+_\d+_(?P<cls>all|hem)\.", re.IGNORECASE)
_CNMC_TRAIN_DIRS = ("training_data", "C-NMC_training_data")
_SPLITS = ("train", "test", "unlabeled")


class DatasetError(ValueError):
    """A dataset cannot be read as asked; the message names the path and the fix."""


# ---------------------------------------------------------------------------
# walking
# ---------------------------------------------------------------------------


def _walk_images(top: str) -> Iterator[str]:
    """Yield absolute paths of image files below ``top`` (skips hidden entries)."""
    stack = [top]
    while stack:
        d = stack.pop()
        try:
            with os.scandir(d) as it:
                for entry in it:
                    if entry.name.startswith("."):
                        continue
                    if entry.is_dir(follow_symlinks=True):
                        stack.append(entry.path)
                    elif is_image_file(entry.name):
                        yield entry.path
        except PermissionError:
            raise DatasetError(f"{d}: permission denied; make the folder readable") from None


def _rel(path: str, root: str) -> str:
    return os.path.relpath(path, root).replace(os.sep, "/")


def subject_from_name(name: str, subject_regex: Optional[re.Pattern] = None) -> str:
    """Subject id from a file name: the user's regex first, then the C-NMC pattern.

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
            return m.group("subject") if "subject" in m.groupdict() else m.group(1)
        return ""
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
    with os.scandir(root) as it:
        classes = sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))
    for cls in classes:
        for p in _walk_images(os.path.join(root, cls)):
            name = os.path.basename(p)
            rows.append((p, _rel(p, root), cls, subject_from_name(name, rx), "train", ""))
    if not rows:
        loose = [e for e in os.listdir(root) if is_image_file(e)]
        hint = (
            f"found {len(loose)} images directly in it; move them into one sub-folder per class"
            if loose
            else "put the images in one sub-folder per class, e.g. all/ and hem/"
        )
        raise DatasetError(f"{root}: no images found in class folders; {hint}")
    return _frame(rows)


def _find_cnmc_parts(root: str):
    train = next((os.path.join(root, d) for d in _CNMC_TRAIN_DIRS if os.path.isdir(os.path.join(root, d))), None)
    val = os.path.join(root, "validation_data")
    test = os.path.join(root, "testing_data")
    return train, (val if os.path.isdir(val) else None), (test if os.path.isdir(test) else None)


def load_cnmc(root, subject_regex=None) -> pd.DataFrame:
    """The C-NMC 2019 release layout (see ``../shared/data/README.md``).

    Training folds become ``split="train"`` with their ``fold``; the
    preliminary test set, labelled by its CSV, becomes ``"test"`` (subjects
    from the CSV's ``Patient_ID`` original names); the final test set is
    ``"unlabeled"``.
    """
    root = _check_root(root)
    rx = _compile_subject_regex(subject_regex)
    train, val, test = _find_cnmc_parts(root)
    if train is None:
        raise DatasetError(
            f"{root}: not a C-NMC release (no training_data/ or C-NMC_training_data/ folder); "
            "use --layout folders for class sub-folders"
        )
    rows = []
    for p in _walk_images(train):
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
        rows += _cnmc_prelim(root, val, rx)
    if test is not None:
        for p in _walk_images(test):
            rows.append((p, _rel(p, root), "", "", "unlabeled", ""))
    if not any(r[4] == "train" for r in rows):
        raise DatasetError(f"{train}: no images in the C-NMC training folds (expected fold_*/all and fold_*/hem)")
    return _frame(rows)


def _cnmc_prelim(root: str, val: str, rx) -> list:
    csvs = sorted(Path(val).glob("*labels*.csv"))
    images = list(_walk_images(val))
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
        raise DatasetError(f"{csv_path}: cannot read the manifest ({exc}); it must be a CSV with a header row") from None
    man.columns = [c.strip().lower() for c in man.columns]
    missing = {"path", "label"} - set(man.columns)
    if missing:
        raise DatasetError(
            f"{csv_path}: manifest lacks column(s) {', '.join(sorted(missing))}; "
            f"expected path,label[,subject][,split], found {', '.join(man.columns)}"
        )
    rows = []
    for i, r in enumerate(man.to_dict("records"), start=2):  # row 1 is the header
        rel = str(r["path"]).strip()
        full = os.path.normpath(os.path.join(root, rel))
        if os.path.commonpath([full, root]) != root:
            raise DatasetError(
                f"{csv_path}:{i}: {rel!r} points outside the dataset root {root}; "
                "manifest paths must be relative to the CSV's folder and stay below it"
            )
        if not os.path.isfile(full):
            raise DatasetError(f"{csv_path}:{i}: image {rel!r} does not exist; fix the path or remove the row")
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


def detect_layout(data) -> str:
    """Guess the layout of ``data``: ``"manifest"``, ``"cnmc"`` or ``"folders"``."""
    p = Path(data)
    if p.is_file():
        if p.suffix.lower() == ".csv":
            return "manifest"
        raise DatasetError(f"{p}: a file that is not a .csv manifest; pass an image folder or a CSV manifest")
    root = _check_root(p)
    if _find_cnmc_parts(root)[0] is not None:
        return "cnmc"
    with os.scandir(root) as it:
        entries = list(it)
    if any(e.is_dir() and not e.name.startswith(".") for e in entries):
        return "folders"
    csvs = [e.path for e in entries if e.name.lower().endswith(".csv")]
    if len(csvs) == 1:
        return "manifest"
    raise DatasetError(
        f"{root}: unknown layout (no class sub-folders, no C-NMC training_data/, no single CSV manifest); "
        "arrange images as <root>/<class>/<image> or pass a CSV manifest with --layout manifest"
    )


def discover(data, layout: str = "auto", subject_regex=None, require_labels: bool = True) -> pd.DataFrame:
    """Find images, labels and subjects under ``data``.

    Parameters
    ----------
    data : str or Path
        A dataset folder, or a CSV manifest.
    layout : {"auto", "folders", "cnmc", "manifest"}
    subject_regex : str, optional
        Regex with a capturing group (or ``(?P<subject>...)``) that takes the
        subject id out of each file name; by default names that follow the
        C-NMC pattern ``UID_<subject>_...`` give their subject.
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
            csvs = sorted(p.glob("*.csv"))
            if len(csvs) != 1:
                raise DatasetError(f"{p}: expected exactly one .csv manifest in the folder, found {len(csvs)}; pass the CSV itself")
            p = csvs[0]
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
    if require_labels:
        check_labels(df, root)
    return df


def check_labels(df: pd.DataFrame, where) -> None:
    """Raise :class:`DatasetError` unless the labeled images span two classes or more."""
    classes = sorted(set(df.loc[df["label"] != "", "label"]))
    if len(classes) < 2:
        found = f"only class {classes[0]!r}" if classes else "no labeled images"
        raise DatasetError(
            f"{where}: {found}; a comparison needs at least two classes (e.g. all/ and hem/ folders)"
        )


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
