"""Dataset discovery: layouts, subject ids, errors, speed."""

import os
import time

import numpy as np
import pytest
from PIL import Image

from leukbench import datasets
from leukbench.datasets import DatasetError, discover

from .conftest import CNMC_SUBSET, PBC_SUBSET, make_cnmc_folders, needs_cnmc, needs_pbc


def test_folders_layout_keeps_cnmc_subjects_and_ignores_non_images(cnmc_folders):
    (cnmc_folders / "README.md").write_text("not an image")
    (cnmc_folders / "labels.csv").write_text("a,b\n")
    (cnmc_folders / "all" / ".DS_Store").write_bytes(b"\0\0")
    (cnmc_folders / "hem" / "notes.txt").write_text("x")
    deep = cnmc_folders / "all" / "batch2" / "x"
    deep.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(deep / "UID_9_1_1_all.png")
    df = discover(cnmc_folders)
    assert df.attrs["layout"] == "folders"
    assert list(df.columns) == datasets.COLUMNS
    assert len(df) == 19
    assert set(df["label"]) == {"all", "hem"}
    row = df.set_index("id").loc["all/batch2/x/UID_9_1_1_all.png"]
    assert row["label"] == "all" and row["subject"] == "9"
    assert set(df.loc[df.label == "hem", "subject"]) == {"H1", "H2", "H3"}
    assert (df["split"] == "train").all()
    assert all(os.path.isabs(p) and os.path.isfile(p) for p in df["path"])


def test_cnmc_release_layout(cnmc_release):
    df = discover(cnmc_release)
    assert df.attrs["layout"] == "cnmc"
    tr = df[df.split == "train"]
    assert len(tr) == 12 and set(tr.fold) == {"fold_0", "fold_1", "fold_2"}
    assert set(tr.subject) == {"1", "2", "3", "H1", "H2", "H3"}
    assert (tr[tr.subject.str.startswith("H")].label == "hem").all()
    te = df[df.split == "test"].set_index("id")
    assert len(te) == 3
    one = te.loc["validation_data/C-NMC_test_prelim_phase_data/2.bmp"]
    assert one.label == "hem" and one.subject == "H7"
    assert te.loc["validation_data/C-NMC_test_prelim_phase_data/1.bmp"].label == "all"
    un = df[df.split == "unlabeled"]
    assert len(un) == 2 and (un.label == "").all()


def test_tcia_training_folder_name(tmp_path):
    root = tmp_path / "tcia"
    make_cnmc_folders(root / "C-NMC_training_data" / "fold_0")
    df = discover(root)
    assert df.attrs["layout"] == "cnmc" and set(df.fold) == {"fold_0"}


def test_manifest_layout_and_errors(cnmc_folders):
    man = cnmc_folders / "manifest.csv"
    man.write_text(
        "path,label,subject,split\n"
        "all/UID_1_1_1_all.bmp,all,,train\n"
        "hem/UID_H1_1_1_hem.bmp,hem,P7,test\n"
        "all/UID_2_1_1_all.bmp,all,,\n"
    )
    df = discover(man)
    assert df.attrs["layout"] == "manifest"
    d = df.set_index("id")
    assert d.loc["all/UID_1_1_1_all.bmp", "subject"] == "1"  # from the C-NMC name
    assert d.loc["hem/UID_H1_1_1_hem.bmp", "subject"] == "P7"  # the manifest wins
    assert d.loc["hem/UID_H1_1_1_hem.bmp", "split"] == "test"

    man.write_text("path,label\nall/missing.bmp,all\n")
    with pytest.raises(DatasetError, match=r"manifest.csv:2: image 'all/missing.bmp' does not exist"):
        discover(man)
    man.write_text("path,label\n../outside.bmp,all\n")
    with pytest.raises(DatasetError, match="outside the dataset root"):
        discover(man)
    man.write_text("file,class\nx,y\n")
    with pytest.raises(DatasetError, match="lacks column"):
        discover(man)


def test_subject_regex(tmp_path):
    root = tmp_path / "d"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for p in ("P01", "P02"):
            Image.new("RGB", (4, 4)).save(root / cls / f"{p}-img{cls}.png")
    df = discover(root, subject_regex=r"^(P\d+)-")
    assert sorted(set(df.subject)) == ["P01", "P02"]
    with pytest.raises(DatasetError, match="no capturing group"):
        discover(root, subject_regex=r"P\d+")
    with pytest.raises(DatasetError, match="not a valid regex"):
        discover(root, subject_regex=r"(P")


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda r: None, "no such folder"),
        (lambda r: r.mkdir(), "unknown layout"),
        (lambda r: (r / "all").mkdir(parents=True), "no images found in class folders"),
        (lambda r: make_cnmc_folders(r, {"all": ["1", "2"]}), "only class 'all'"),
    ],
)
def test_one_line_errors_name_the_path(tmp_path, setup, message):
    root = tmp_path / "data"
    setup(root)
    with pytest.raises(DatasetError, match=message) as err:
        discover(root)
    assert str(root) in str(err.value) and "\n" not in str(err.value)


def test_bundled_sample_supports_subject_aware_5_fold():
    df = datasets.load_sample()
    assert df.attrs["layout"] == "folders"
    per_class = df.groupby("label")["subject"].nunique()
    assert set(per_class.index) == {"all", "hem"}
    assert (per_class >= 5).all()  # StratifiedGroupKFold(5) needs 5 subjects per class
    assert (df.subject != "").all()
    assert df.groupby("subject").size().min() >= 5
    assert (df[df.subject.str.startswith("H")].label == "hem").all()


def test_discovery_of_100k_files_takes_seconds(tmp_path):
    root = tmp_path / "big"
    n_per = 50_000
    for cls in ("all", "hem"):
        d = root / cls
        d.mkdir(parents=True)
        for i in range(n_per):
            (d / f"UID_{i % 97}_{i}_1_{cls}.bmp").touch()
    t0 = time.perf_counter()
    df = discover(root)
    elapsed = time.perf_counter() - t0
    assert len(df) == 2 * n_per
    assert df.subject.nunique() == 97
    assert elapsed < 10, f"discovery took {elapsed:.1f} s"


@needs_cnmc
def test_real_cnmc_subset_subjects():
    df = discover(CNMC_SUBSET)
    assert len(df) == 1936  # provenance.csv beside the class folders is ignored
    assert df.subject.nunique() == 41
    hem_subjects = set(df.loc[df.label == "hem", "subject"])
    assert all(s.upper().startswith("H") for s in hem_subjects)


@needs_pbc
def test_real_pbc_subset_has_no_subjects():
    df = discover(PBC_SUBSET)
    assert len(df) == 3200 and df.label.nunique() == 8
    assert (df.subject == "").all()
    assert np.all(df.groupby("label").size() == 400)
