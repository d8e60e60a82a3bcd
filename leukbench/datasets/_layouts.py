"""The three layouts a dataset can have, each read into a discovery table.

Class folders (``root/<class>/.../<image>``), the C-NMC 2019 release
(``training_data/fold_k/{all,hem}``, the preliminary test set with its labels
CSV, the unlabeled final test set) and a CSV manifest
(``path,label[,subject][,split]``).
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pandas as pd

from ..exceptions import DatasetError
from ..images import IMAGE_EXTENSIONS, is_image_file
from ._files import WalkLog, check_root, dir_key, relative_id, subdirs, walk_images
from ._subjects import CNMC_NAME, compile_subject_regex, subject_from_name

#: Columns of a discovery table, in order.
COLUMNS = ["path", "id", "label", "subject", "split", "fold"]
#: Values of ``layout=``: ``"auto"`` detects one of the three others.
LAYOUTS = ("auto", "folders", "cnmc", "manifest")

_CNMC_TRAIN_DIRS = ("training_data", "C-NMC_training_data")
#: A C-NMC training fold folder: ``fold_0``, ``fold_1``, ...
_FOLD_DIR = re.compile(r"^fold_\d+$", re.IGNORECASE)
_SPLITS = ("train", "test", "unlabeled")
ACCEPTED_EXTENSIONS = ", ".join(sorted(IMAGE_EXTENSIONS))


def _frame(rows: List[Tuple[str, str, str, str, str, str]], log: Optional[WalkLog] = None) -> pd.DataFrame:
    """The discovery table of ``rows``; ``attrs`` say what ``log`` left out or followed outside the root.

    ``attrs["undecodable_names"]``: escaped ids of the files (and folders) left
    out because their names are not valid UTF-8; ``attrs["outside_links"]``:
    the number of images reached through symbolic links leading outside the root.
    """
    df = pd.DataFrame(rows, columns=COLUMNS)
    df = df.sort_values("id", kind="stable").reset_index(drop=True)
    df.attrs["undecodable_names"] = sorted(log.undecodable) if log is not None else []
    df.attrs["outside_links"] = log.outside_links if log is not None else 0
    return df


def load_folders(root, subject_regex=None) -> pd.DataFrame:
    """Class-folder layout: ``root/<class>/**/<image>``; all images are ``train``."""
    root = check_root(root)
    rx = compile_subject_regex(subject_regex)
    rows = []
    log = WalkLog(root)
    classes = [e.name for e in subdirs(root) if not log.skip_name(e.path)]
    # the root and every class folder count as seen, so a link from one class into
    # another (or back up to the root) is not walked twice under the wrong label
    seen = {k for k in map(dir_key, [root] + [os.path.join(root, c) for c in classes]) if k is not None}
    for cls in classes:
        cls_dir = os.path.join(root, cls)
        if os.path.islink(cls_dir) and log.outside(cls_dir):
            before = log.outside_links
            paths = list(walk_images(cls_dir, seen, log))
            log.outside_links = before + len(paths)  # every image below a class folder linked from outside
        else:
            paths = walk_images(cls_dir, seen, log)
        for p in paths:
            name = os.path.basename(p)
            rows.append((p, relative_id(p, root), cls, subject_from_name(name, rx), "train", ""))
    if not rows:
        loose = [e for e in os.listdir(root) if is_image_file(e)]
        hint = (
            f"found {len(loose)} images directly in it; move them into one sub-folder per class"
            if loose
            else f"put the images ({ACCEPTED_EXTENSIONS}) in one sub-folder per class, e.g. all/ and hem/"
        )
        raise DatasetError(f"{root}: no images found in class folders; {hint}")
    return _frame(rows, log)


def fold_dirs(root: str) -> Tuple[List[str], List[str]]:
    """Names of the sub-folders of ``root`` that are / are not ``fold_<n>`` folders."""
    names = [e.name for e in subdirs(root)]
    return [n for n in names if _FOLD_DIR.match(n)], [n for n in names if not _FOLD_DIR.match(n)]


def _is_fold_root(root: str) -> bool:
    """True when all sub-folders of ``root`` are ``fold_<n>`` (C-NMC ``training_data/`` itself)."""
    folds, others = fold_dirs(root)
    return bool(folds) and not others


def find_cnmc_parts(root: str):
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


def nested_cnmc_root(root: str) -> Optional[str]:
    """The sole sub-folder of ``root`` when it is a C-NMC root (``root`` is one level too high)."""
    subs = subdirs(root)
    if len(subs) == 1 and find_cnmc_parts(subs[0].path)[0] is not None:
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
    root = check_root(root)
    rx = compile_subject_regex(subject_regex)
    train, val, test = find_cnmc_parts(root)
    if train is None:
        nested = nested_cnmc_root(root)
        if nested is not None:
            raise DatasetError(f"{root}: the C-NMC release is one level down; pass {nested} instead")
        raise DatasetError(
            f"{root}: not a C-NMC release (no training_data/, C-NMC_training_data/ or fold_* folders); "
            "use --layout folders for class sub-folders"
        )
    seen = {k for k in map(dir_key, (d for d in (root, train, val, test) if d)) if k is not None}
    rows = []
    log = WalkLog(root)
    for p in walk_images(train, seen, log):
        rel = relative_id(p, root)
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
        rows += _cnmc_prelim(root, val, rx, seen, log)
    if test is not None:
        for p in walk_images(test, seen, log):
            rows.append((p, relative_id(p, root), "", "", "unlabeled", ""))
    if not any(r[4] == "train" for r in rows):
        raise DatasetError(
            f"{train}: no images in the C-NMC training folds (expected fold_*/all and fold_*/hem); "
            "for other class names write a CSV manifest"
        )
    return _frame(rows, log)


def _cnmc_prelim(root: str, val: str, rx, seen, log: WalkLog) -> list:
    csvs = sorted(Path(val).glob("*labels*.csv"))
    images = list(walk_images(val, seen, log))
    if not images:
        return []
    if not csvs:
        return [(p, relative_id(p, root), "", "", "unlabeled", "") for p in images]
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
            rows.append((p, relative_id(p, root), "", "", "unlabeled", ""))
            continue
        label = {"1": "all", "0": "hem"}.get(str(r.labels).strip(), str(r.labels).strip().lower())
        subj = subject_from_name(str(r.Patient_ID).strip(), rx)
        rows.append((p, relative_id(p, root), label, subj, "test", ""))
    return rows


def load_manifest(csv_path, subject_regex=None) -> pd.DataFrame:
    """A CSV manifest with columns ``path,label[,subject][,split]``.

    Paths are relative to the CSV's folder, which is the dataset root; a path
    that is missing or points outside that folder, and a row with an empty
    label whose split is not ``unlabeled``, are errors naming the line. A
    manifest that is not UTF-8 is read as Latin-1, with a warning.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DatasetError(f"{csv_path}: manifest not found; give the path of a CSV with columns path,label")
    root = str(csv_path.resolve().parent)
    rx = compile_subject_regex(subject_regex)
    man = _read_manifest(csv_path)
    rows = []
    log = WalkLog(root)
    first_line: Dict[str, int] = {}  # image -> the manifest line that listed it first
    for i, r in enumerate(man.to_dict("records"), start=2):  # row 1 is the header
        where = f"{csv_path}:{i}"
        full = _manifest_image(r, root, where)
        if full in first_line:
            raise DatasetError(f"{where}: image {str(r['path']).strip()!r} is already listed on line "
                               f"{first_line[full]}; list each image once (one label, one subject, one split)")
        first_line[full] = i
        if os.path.realpath(full) != full and log.outside(full):
            log.outside_links += 1
        label = str(r["label"]).strip()
        subj = str(r.get("subject", "") or "").strip() or subject_from_name(os.path.basename(full), rx)
        split = str(r.get("split", "") or "").strip().lower()
        if not label and split != "unlabeled":
            raise DatasetError(f"{where}: image {str(r['path']).strip()!r} has an empty label; give its class, "
                               "or write unlabeled in a split column for an image without one")
        split = split or "train"
        if split not in _SPLITS:
            raise DatasetError(f"{where}: split {split!r} is not one of {', '.join(_SPLITS)}")
        rows.append((full, relative_id(full, root), label, subj, split, ""))
    if not rows:
        raise DatasetError(f"{csv_path}: the manifest has no rows; add one line per image: path,label")
    return _frame(rows, log)


def _read_manifest(csv_path: Path) -> pd.DataFrame:
    """The manifest's rows as strings, column names stripped and lower-cased; needs path and label."""
    try:
        try:
            man = pd.read_csv(csv_path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            warnings.warn(f"{csv_path}: not UTF-8 (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
                          "read as Latin-1 — save it as UTF-8 if its names look wrong", UserWarning, stacklevel=4)
            man = pd.read_csv(csv_path, dtype=str, keep_default_na=False, encoding="latin-1")
    except Exception as exc:  # noqa: BLE001 - any parse error becomes one clear line
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
    return man


def _manifest_image(row: dict, root: str, where: str) -> str:
    """Absolute path of the image a manifest row lists; it must be a file below ``root``."""
    rel = str(row["path"]).strip()
    full = os.path.normpath(os.path.join(root, rel))
    if os.path.commonpath([full, root]) != root:
        raise DatasetError(
            f"{where}: {rel!r} points outside the dataset root {root}; "
            "manifest paths must be relative to the CSV's folder and stay below it"
        )
    if os.path.isdir(full):
        raise DatasetError(f"{where}: {rel!r} is a folder, not an image; list one image file per row")
    if not os.path.isfile(full):
        raise DatasetError(f"{where}: image {rel!r} does not exist; fix the path or remove the row")
    return full
