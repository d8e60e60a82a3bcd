"""The committed comparison table of the bundled sample must match the code.

CI runs this with the rest of the suite: it re-runs the documented command
(extract + compare on the bundled sample) into a temporary folder and compares
``table.md`` byte for byte with ``results/sample/table.md``. When it fails, the
code changed the numbers: regenerate the table with the command in
``results/README.md`` and commit it together with the change.
"""

from __future__ import annotations

import difflib
import shlex
from pathlib import Path

import pytest

from leukbench.cli import main

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "results" / "sample" / "table.md"

#: Must stay identical to the command in results/README.md.
SAMPLE_COMMAND = (
    "leukbench compare --features efficientnet_lite0,handcrafted,efficientnet_lite0+handcrafted "
    "--seed 42 --n-jobs 2 -q --out results/sample"
)


def test_readme_documents_the_command():
    readme = (REPO / "results" / "README.md").read_text(encoding="utf-8")
    assert SAMPLE_COMMAND in readme


@pytest.mark.slow
def test_sample_table_is_up_to_date(tmp_path, capsys):
    argv = shlex.split(SAMPLE_COMMAND)[1:]
    out = tmp_path / "sample"
    argv[argv.index("--out") + 1] = str(out)
    argv += ["--cache-dir", str(tmp_path / "cache")]
    assert main(argv) == 0
    fresh = (out / "table.md").read_text(encoding="utf-8")
    committed = COMMITTED.read_text(encoding="utf-8") if COMMITTED.exists() else ""
    if fresh != committed:
        diff = "".join(difflib.unified_diff(
            committed.splitlines(True), fresh.splitlines(True),
            "results/sample/table.md (committed)", "table.md (this code)"))
        pytest.fail(
            "results/sample/table.md is out of date with the code; regenerate it with\n"
            f"    {SAMPLE_COMMAND}\nand commit it.\n{diff}"
        )
    # the row count is the battery times the three feature sets
    rows = [ln for ln in fresh.splitlines() if ln.startswith("| ") and "---" not in ln][1:]
    assert len(rows) == 3 * 12
