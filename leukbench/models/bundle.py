"""The model bundle on disk: a folder (or one ``.zip``) of files listed, with their sha256, in
``manifest.json``.

:func:`write_bundle` writes the files and then the manifest (format name and
version, and for each file its size and sha256); :func:`read_bundle` reads the
manifest, refuses a format of a newer major version, and reads every listed
file, refusing one that is missing, truncated or changed. Nothing here
interprets the files: :mod:`leukbench.models.predicting` does, with
:mod:`skops.io` and XGBoost's JSON format. A ``.zip`` is read in memory,
member by member, by the names the manifest lists (never extracted to disk).

Example
-------
>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp()) / "model"
>>> _ = write_bundle(folder, {"a.txt": b"hello"}, {"kind": "demo"})
>>> manifest, files = read_bundle(folder)
>>> manifest["format_version"], manifest["kind"], files["a.txt"]
('1.0', 'demo', b'hello')
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any, Dict, Mapping, Tuple

from ..exceptions import BundleError

__all__ = ["FORMAT", "FORMAT_VERSION", "MANIFEST", "check_target", "read_bundle", "sha256", "write_bundle"]

#: The ``format`` field of every manifest.
FORMAT = "leukbench-model"
#: ``major.minor``: a reader refuses a newer major version; a newer minor one only adds fields.
FORMAT_VERSION = "1.0"
#: The file that lists the others.
MANIFEST = "manifest.json"
#: The manifest field holding the sha256 of the rest of the manifest (so that an edit shows).
DIGEST = "manifest_sha256"

_REFIT = "copy the whole bundle again from where it was made, or train it again with `leukbench train`"


def sha256(data: bytes) -> str:
    """Hex sha256 of ``data``.

    Example
    -------
    >>> sha256(b"")[:12]
    'e3b0c44298fc'
    """
    return hashlib.sha256(data).hexdigest()


def _digest(manifest: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of ``manifest`` without its :data:`DIGEST` field."""
    body = {k: v for k, v in manifest.items() if k != DIGEST}
    return sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())


def _check_name(name: str) -> None:
    if not name or name != os.path.basename(name) or name in (".", "..", MANIFEST) or "\\" in name:
        raise BundleError(f"invalid file name {name!r} in a model bundle: a plain name other than {MANIFEST}")


def check_target(path, option: str = "--out") -> None:
    """Raise now when ``path`` is a folder that holds something other than a model bundle.

    A bundle is only ever written to a new or empty folder, a folder that
    holds a bundle (replaced), or a path ending in ``.zip``.

    Example
    -------
    >>> import tempfile
    >>> check_target(tempfile.mkdtemp())  # an empty folder is fine
    """
    path = Path(path)
    if path.suffix.lower() == ".zip":
        if path.is_dir():
            raise BundleError(f"{path}: is a folder; give {option} a new path ending in .zip, or a folder")
        if path.exists() and not _is_bundle_zip(path):
            raise BundleError(f"{path}: exists and is not a model bundle (no {MANIFEST} in it); give {option} a "
                              "new path ending in .zip, or remove the file")
        return
    if path.exists() and (not path.is_dir() or (any(path.iterdir()) and not (path / MANIFEST).is_file())):
        raise BundleError(f"{path}: exists and is not a model bundle; give {option} a new or empty folder "
                          "(or a path ending in .zip)")


def _is_bundle_zip(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return MANIFEST in archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError):
        return False


def write_bundle(path, files: Mapping[str, bytes], manifest: Mapping[str, Any]) -> Path:
    """Write ``files`` (name -> bytes) and their manifest to the folder or ``.zip`` ``path``.

    The manifest is ``manifest`` plus ``format``, ``format_version``,
    ``files`` (name -> ``{"sha256", "bytes"}``) and ``manifest_sha256`` (the
    sha256 of the rest of the manifest, so that an edited manifest shows). A
    folder is written file by file, the manifest last; a folder that holds
    other things than a bundle, or a ``.zip`` that is not one, is refused
    rather than mixed into or overwritten.

    Raises
    ------
    BundleError
        When ``path`` is a folder with other contents, a file that is not a
        bundle ``.zip``, or a file name is not plain.

    Example
    -------
    >>> import tempfile, pathlib
    >>> path = write_bundle(pathlib.Path(tempfile.mkdtemp()) / "m.zip", {"a.txt": b"hi"}, {"kind": "demo"})
    >>> path.name, sorted(read_bundle(path)[1])
    ('m.zip', ['a.txt'])
    """
    path = Path(path)
    for name in files:
        _check_name(name)
    check_target(path)
    full = {**manifest, "format": FORMAT, "format_version": FORMAT_VERSION,
            "files": {n: {"sha256": sha256(b), "bytes": len(b)} for n, b in files.items()}}
    full = json.loads(json.dumps(full, default=str))  # as it will be read back
    full[DIGEST] = _digest(full)
    text = json.dumps(full, indent=2, sort_keys=True).encode() + b"\n"
    if path.suffix.lower() == ".zip":
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, data in files.items():
                archive.writestr(name, data)
            archive.writestr(MANIFEST, text)
        os.replace(tmp, path)
        return path
    path.mkdir(parents=True, exist_ok=True)
    old = path / MANIFEST
    if old.is_file():  # the bundle being replaced: its files go, the manifest first (a half-written
        try:           # bundle has none, never one that lists files it lacks)
            stale = [n for n in json.loads(old.read_bytes()).get("files", {}) if n not in files]
        except (ValueError, AttributeError):
            stale = []
        old.unlink()
        for name in stale:
            if name == os.path.basename(name) and (path / name).is_file():
                (path / name).unlink()
    for name, data in files.items():
        (path / name).write_bytes(data)
    tmp = path / f".{MANIFEST}.tmp"
    tmp.write_bytes(text)
    os.replace(tmp, old)
    return path


class _Source:
    """Reads the named files of a bundle folder or ``.zip``."""

    def __init__(self, path: Path):
        self.path = path
        self.archive = None
        if path.is_file():
            try:
                self.archive = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, EOFError, OSError):
                if path.suffix.lower() == ".zip":
                    raise BundleError(f"{path}: a truncated or damaged .zip (it cannot be opened); copy it "
                                      "again from where it was made") from None
                raise BundleError(f"{path}: not a model bundle (neither a folder nor a .zip); "
                                  "pass the folder or .zip that `leukbench train` wrote") from None
        elif not path.is_dir():
            raise BundleError(f"{path}: no such model bundle; pass the folder or .zip that `leukbench train` wrote")

    def where(self, name: str) -> str:
        return f"{self.path}:{name}" if self.archive is not None else str(self.path / name)

    def read(self, name: str) -> bytes:
        try:
            if self.archive is not None:
                return self.archive.read(name)
            return (self.path / name).read_bytes()
        except (KeyError, FileNotFoundError):
            raise BundleError(f"{self.where(name)}: missing from the model bundle; {_REFIT}") from None
        except (zipfile.BadZipFile, EOFError, zlib.error) as exc:  # a truncated or damaged archive
            raise BundleError(f"{self.where(name)}: cannot be read from a truncated or damaged .zip ({exc}); "
                              "copy it again from where it was made") from None

    def close(self) -> None:
        if self.archive is not None:
            self.archive.close()


def _check_version(manifest: Dict[str, Any], where: str) -> None:
    if manifest.get("format") != FORMAT:
        raise BundleError(f"{where}: not a leukbench model manifest (format {manifest.get('format')!r}); "
                          "pass the folder or .zip that `leukbench train` wrote")
    version = str(manifest.get("format_version", ""))
    try:
        major = int(version.split(".")[0])
    except ValueError:
        raise BundleError(f"{where}: format_version {version!r} is not major.minor; {_REFIT}") from None
    if major > int(FORMAT_VERSION.split(".")[0]):
        raise BundleError(f"{where}: bundle format {version} is newer than this leukbench reads "
                          f"({FORMAT_VERSION.split('.')[0]}.x); upgrade leukbench (pip install -U leukbench)")


def read_bundle(path) -> Tuple[Dict[str, Any], Dict[str, bytes]]:
    """The manifest and the files (name -> bytes) of a bundle, each checked against its sha256.

    Raises
    ------
    BundleError
        One line naming the file: no bundle there, a truncated or damaged
        ``.zip``, an unreadable or edited manifest, a format of a newer major
        version, a listed file missing, truncated or changed.

    Example
    -------
    >>> import tempfile, pathlib
    >>> folder = write_bundle(pathlib.Path(tempfile.mkdtemp()) / "m", {"a.txt": b"hi"}, {"kind": "demo"})
    >>> read_bundle(folder)[1]
    {'a.txt': b'hi'}
    """
    source = _Source(Path(path))
    try:
        where = source.where(MANIFEST)
        raw = source.read(MANIFEST)
        try:
            manifest = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BundleError(f"{where}: not valid JSON ({type(exc).__name__}); {_REFIT}") from None
        if not isinstance(manifest, dict):
            raise BundleError(f"{where}: not a leukbench model manifest (not a JSON object); {_REFIT}")
        _check_version(manifest, where)  # first: a newer format may list its files otherwise
        if not isinstance(manifest.get("files"), dict):
            raise BundleError(f"{where}: not a leukbench model manifest (no file list); {_REFIT}")
        if manifest.get(DIGEST) != _digest(manifest):
            raise BundleError(f"{where}: the manifest was edited (its {DIGEST} does not match its contents); "
                              f"{_REFIT}")
        files = {}
        for name, entry in manifest["files"].items():
            _check_name(name)
            if not isinstance(entry, dict) or not isinstance(entry.get("bytes"), int):
                raise BundleError(f"{where}: the entry of {name!r} is not {{'sha256', 'bytes'}}; {_REFIT}")
            data = source.read(name)
            if len(data) != entry["bytes"]:
                raise BundleError(f"{source.where(name)}: {len(data)} bytes where the manifest lists "
                                  f"{entry['bytes']} (truncated or changed); {_REFIT}")
            if sha256(data) != entry.get("sha256"):
                raise BundleError(f"{source.where(name)}: its sha256 does not match the manifest (the file was "
                                  f"changed); {_REFIT}")
            files[name] = data
        return manifest, files
    finally:
        source.close()
