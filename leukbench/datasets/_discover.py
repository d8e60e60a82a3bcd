"""Finding the layout of a dataset and reading it: :func:`discover`, its checks, the bundled sample."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pandas as pd

from ..exceptions import DatasetError
from ..images import is_image_file
from ._files import check_root, manifests_in, root_csvs, short_names, subdirs
from ._layouts import (
    ACCEPTED_EXTENSIONS,
    LAYOUTS,
    find_cnmc_parts,
    fold_dirs,
    load_cnmc,
    load_folders,
    load_manifest,
    nested_cnmc_root,
)


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
    root = check_root(p)
    # 1. C-NMC: the release folder, or its training folder (all sub-folders fold_<n>)
    if find_cnmc_parts(root)[0] is not None:
        return "cnmc"
    # 2. a CSV manifest (header with path and label) in the folder, even beside image folders
    manifests = manifests_in(root)
    if len(manifests) > 1:
        raise DatasetError(
            f"{root}: several CSV manifests ({short_names(manifests)}); pass the one to use, "
            f"e.g. {manifests[0]}, or --layout folders to ignore them"
        )
    if manifests:
        return "manifest"
    # 3. class folders
    folds, others = fold_dirs(root)
    if folds or others:
        nested = nested_cnmc_root(root)
        if nested is not None:
            raise DatasetError(
                f"{root}: holds only the C-NMC release folder {os.path.basename(nested)}/; pass {nested} instead"
            )
        if folds:
            raise DatasetError(
                f"{root}: sub-folders mix C-NMC folds ({short_names(folds)}) with other folders "
                f"({short_names(others)}); pass a folder whose sub-folders are all fold_<n>, or all class folders"
            )
        return "folders"
    # 4. no sub-folders: a lone CSV is the manifest (load_manifest names missing columns)
    csvs = root_csvs(root)
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
        f"{root}: the folder holds no images ({ACCEPTED_EXTENSIONS}); put them in one sub-folder per class, "
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
    Files whose names are not valid UTF-8 cannot be ids (the cache, CSVs
    and reports are UTF-8): they are left out with a warning that names
    them escaped (``cell_\\xff.png``), listed in
    ``attrs["undecodable_names"]``; ``attrs["outside_links"]`` counts the
    images reached through symbolic links leading outside the root (they
    are followed). :func:`summarize` mentions both.

    Raises
    ------
    DatasetError
        With a one-line message naming the path and the fix.

    Example
    -------
    >>> from leukbench.datasets import discover, sample_root
    >>> df = discover(sample_root())
    >>> df.attrs["layout"], len(df), sorted(set(df["label"]))
    ('folders', 159, ['all', 'hem'])
    """
    if layout not in LAYOUTS:
        raise DatasetError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if layout == "auto":
        layout = detect_layout(data)
    if layout == "manifest":
        p = _manifest_path(Path(data))
        df = load_manifest(p, subject_regex)
        root = str(p.resolve().parent)
    elif layout == "cnmc":
        df = load_cnmc(data, subject_regex)
        root = check_root(data)
    else:
        df = load_folders(data, subject_regex)
        root = check_root(data)
    df.attrs["root"] = root
    df.attrs["layout"] = layout
    where = p if layout == "manifest" else root
    _warn_undecodable(df, where)
    _check_label_case(df, where)
    if require_labels:
        check_labels(df, where)
    return df


def _manifest_path(p: Path) -> Path:
    """``p`` itself, or the one CSV manifest in the folder ``p``."""
    if not p.is_dir():
        return p
    manifests, csvs = manifests_in(str(p)), root_csvs(str(p))
    if len(manifests) == 1 or (not manifests and len(csvs) == 1):
        return Path((manifests or csvs)[0])
    raise DatasetError(
        f"{p}: expected one CSV manifest (columns path,label) in the folder, found {len(manifests)} "
        f"among {len(csvs)} CSV files; pass the CSV itself"
    )


def _warn_undecodable(df: pd.DataFrame, where) -> None:
    """Warn, naming them escaped, about the files left out for names that are not UTF-8."""
    names = df.attrs.get("undecodable_names") or []
    if names:
        warnings.warn(
            f"{where}: {len(names)} file(s) left out, their names are not valid UTF-8: "
            f"{', '.join(names[:4])}{' ...' if len(names) > 4 else ''}; rename them "
            "(e.g. convmv -f latin1 -t utf8 --notest -r) to include them", UserWarning, stacklevel=3)


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
            empty = [e.name for e in subdirs(root) if e.name not in classes]
            if empty:
                hint = f"{', '.join(f'{n}/' for n in empty)} holds no images; " + hint
            elif len(classes) == 1:
                inner = sorted(e.name for e in subdirs(os.path.join(root, classes[0])))
                if len(inner) >= 2:  # one level too high: the classes are one folder down
                    hint = (f"{classes[0]}/ holds the folders {', '.join(inner[:4])}; if they are the "
                            f"classes, pass {os.path.join(root, classes[0])}")
    raise DatasetError(f"{where}: {found}; a comparison needs at least two classes: {hint}")


def sample_root() -> Path:
    """Folder of the bundled C-NMC sample (class folders ``all/`` and ``hem/``)."""
    return Path(__file__).resolve().parent.parent / "data" / "sample"


def load_sample() -> pd.DataFrame:
    """The bundled sample: real C-NMC 2019 cells of 16 subjects (8 ALL, 8 healthy).

    Credit: C-NMC 2019 (SBI Lab, IIIT-Delhi / AIIMS New Delhi), CC BY 3.0.

    Example
    -------
    >>> df = load_sample()
    >>> df.groupby("label")["subject"].nunique().to_dict()
    {'all': 8, 'hem': 8}
    """
    return discover(sample_root(), layout="folders")


def summarize(df: pd.DataFrame) -> str:
    """One line: images, classes with counts, subjects, splits, and what discovery left out or followed.

    Files left out for names that are not valid UTF-8 and images reached
    through symbolic links outside the dataset root (see :func:`discover`)
    add a clause each.
    """
    counts = df.loc[df["label"] != "", "label"].value_counts().sort_index()
    cls = ", ".join(f"{k} {v}" for k, v in counts.items())
    n_subj = df.loc[df["subject"] != "", "subject"].nunique()
    splits = ", ".join(f"{k} {v}" for k, v in df["split"].value_counts().sort_index().items())
    subj = f"{n_subj} subjects" if n_subj else "no subject ids"
    notes = ""
    if df.attrs.get("undecodable_names"):
        notes += f"; {len(df.attrs['undecodable_names'])} left out (names not valid UTF-8)"
    if df.attrs.get("outside_links"):
        notes += f"; {df.attrs['outside_links']} through symlinks outside the dataset root"
    return f"{len(df)} images ({cls}); {subj}; splits: {splits}{notes}"
