"""Dataset discovery: layouts, subject ids, errors, speed."""

import os
import time

import numpy as np
import pytest
from PIL import Image

from leukbench import datasets
from leukbench.datasets import DatasetError, discover

from .conftest import CNMC_SUBSET, PBC_SUBSET, make_cnmc_folders, make_cnmc_release, needs_cnmc, needs_pbc


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


@pytest.mark.parametrize("train_dir", ["training_data", "C-NMC_training_data"])
def test_pointing_at_the_training_folds_reads_them_as_cnmc(tmp_path, train_dir):
    root = make_cnmc_release(tmp_path / "C-NMC_Leukemia")
    if train_dir != "training_data":
        (root / "training_data").rename(root / train_dir)
    df = discover(root / train_dir)
    assert df.attrs["layout"] == "cnmc"
    assert len(df) == 12 and (df.split == "train").all()
    assert set(df.label) == {"all", "hem"}  # not fold_0/fold_1/fold_2
    assert (df.label == np.where(df.subject.str.startswith("H"), "hem", "all")).all()
    assert set(df.fold) == {"fold_0", "fold_1", "fold_2"}
    assert df.set_index("id").loc["fold_1/hem/UID_H2_1_1_hem.bmp", "fold"] == "fold_1"


def test_folder_above_the_release_or_mixed_folds_is_refused(cnmc_release):
    above = cnmc_release.parent
    for layout in ("auto", "cnmc"):
        with pytest.raises(DatasetError, match=rf"{above}: .*; pass {cnmc_release} instead$"):
            discover(above, layout=layout)
    make_cnmc_folders(cnmc_release / "training_data" / "extra")
    with pytest.raises(DatasetError, match=r"mix C-NMC folds \(fold_0, fold_1, fold_2\) with other folders \(extra\)"):
        discover(cnmc_release / "training_data")


def test_manifest_beside_image_folders_is_used(tmp_path, cnmc_release):
    root = tmp_path / "m"
    (root / "images").mkdir(parents=True)
    for name in ("a.png", "b.png", "c.png"):
        Image.new("RGB", (4, 4)).save(root / "images" / name)
    (root / "notes.csv").write_text("file,comment\na.png,blurry\n")  # no path,label: not a manifest
    (root / "manifest.csv").write_text("path,label,subject\nimages/a.png,all,P1\nimages/b.png,hem,P2\n")
    for layout in ("auto", "manifest"):
        df = discover(root, layout=layout)
        assert df.attrs["layout"] == "manifest"
        assert dict(zip(df.id, df.label)) == {"images/a.png": "all", "images/b.png": "hem"}
        assert list(df.subject) == ["P1", "P2"]
    (root / "more.csv").write_text("Path,Label\nimages/c.png,all\n")
    with pytest.raises(DatasetError, match=r"several CSV manifests \(manifest.csv, more.csv\); pass the one"):
        discover(root)
    with pytest.raises(DatasetError, match="found 2 among 3 CSV files; pass the CSV itself"):
        discover(root, layout="manifest")
    # the C-NMC layout still wins: its labels CSV lies deeper, and a manifest at its root is not used
    (cnmc_release / "extra.csv").write_text("path,label\ntraining_data/fold_0/all/UID_1_1_1_all.bmp,all\n")
    assert discover(cnmc_release).attrs["layout"] == "cnmc"


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
    man.write_text("path,label\nall/UID_1_1_1_all.bmp,all\nhem/UID_H1_1_1_hem.bmp,hem\n./all/UID_1_1_1_all.bmp,hem\n")
    with pytest.raises(DatasetError, match=r"manifest.csv:4: image './all/UID_1_1_1_all.bmp' is already listed "
                                           r"on line 2"):
        discover(man)
    man.write_text("path,label\nall/UID_1_1_1_all.bmp,ALL\nhem/UID_H1_1_1_hem.bmp,hem\nall/UID_2_1_1_all.bmp,all\n")
    with pytest.raises(DatasetError, match=r"manifest.csv: labels 'ALL' and 'all' differ only in case; if they "
                                           r"are one class, write them the same in the label column"):
        discover(man)
    man.write_text("path,label\nall,all\n")
    with pytest.raises(DatasetError, match=r"manifest.csv:2: 'all' is a folder, not an image"):
        discover(man)
    with pytest.raises(DatasetError, match=r"nosuch.csv: no such manifest"):
        discover(cnmc_folders / "nosuch.csv")


def test_subject_regex(tmp_path):
    root = tmp_path / "d"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for p in ("P01", "P02"):
            Image.new("RGB", (4, 4)).save(root / cls / f"{p}-img{cls}.png")
    df = discover(root, subject_regex=r"^(P\d+)-")
    assert sorted(set(df.subject)) == ["P01", "P02"]
    # a name the regex misses falls back to the C-NMC pattern, else gives no subject
    Image.new("RGB", (4, 4)).save(root / "a" / "UID_7_1_1_all.png")
    Image.new("RGB", (4, 4)).save(root / "b" / "other.png")
    d = discover(root, subject_regex=r"^(P\d+)-").set_index("id")
    assert d.loc["a/UID_7_1_1_all.png", "subject"] == "7" and d.loc["b/other.png", "subject"] == ""
    # an optional group that takes no part gives "", not None
    for rx in (r"^(?:(P\d+)-)?", r"^(?:(?P<subject>P\d+)-)?"):
        d = discover(root, subject_regex=rx).set_index("id")
        assert d.loc["a/P01-imga.png", "subject"] == "P01"
        assert d.loc["b/other.png", "subject"] == "" and d.loc["a/UID_7_1_1_all.png", "subject"] == ""
    with pytest.raises(DatasetError, match="no capturing group"):
        discover(root, subject_regex=r"P\d+")
    with pytest.raises(DatasetError, match="not a valid regex"):
        discover(root, subject_regex=r"(P")


def test_a_bad_subject_regex_is_a_parameter_error(cnmc_folders):
    from leukbench.exceptions import InvalidParameterError

    for rx, message in (("(P", r"^subject_regex '\(P' is not a valid regex: "),
                        ("P[0-9]+", r"^subject_regex 'P\[0-9\]\+' has no capturing group; ")):
        with pytest.raises(InvalidParameterError, match=message) as err:
            discover(cnmc_folders, subject_regex=rx)
        assert isinstance(err.value, DatasetError) and err.value.parameter == "subject_regex"
        assert err.value.renamed("--subject-regex") == "--subject-regex " + str(err.value)[len("subject_regex "):]


def test_unknown_layout_is_a_dataset_error(cnmc_folders):
    with pytest.raises(DatasetError, match="unknown layout 'zip'; choose one of " + ", ".join(datasets.LAYOUTS)):
        discover(cnmc_folders, layout="zip")


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda r: None, "no such folder"),
        (lambda r: r.mkdir(), r"data: the folder holds no images \(.bmp, .gif"),
        (lambda r: (r.mkdir(), (r / "README.md").write_text("x")), "the folder holds no images"),
        (lambda r: (r.mkdir(), Image.new("RGB", (4, 4)).save(r / "a.png")), "1 images lie directly in the folder"),
        (lambda r: (r / "all").mkdir(parents=True), "no images found in class folders"),
        (lambda r: make_cnmc_folders(r, {"all": ["1", "2"]}), "only class 'all'"),
        (lambda r: (make_cnmc_folders(r, {"all": ["1", "2"]}), (r / "hem").mkdir()),
         "only class 'all'; a comparison needs at least two classes: hem/ holds no images"),
        (lambda r: make_cnmc_folders(r / "cells"), r"cells/ holds the folders all, hem; if they are the "
                                                   r"classes, pass .*data/cells$"),
    ],
)
def test_one_line_errors_name_the_path(tmp_path, setup, message):
    root = tmp_path / "data"
    setup(root)
    with pytest.raises(DatasetError, match=message) as err:
        discover(root)
    assert str(root) in str(err.value) and "\n" not in str(err.value)


def test_one_class_is_enough_to_extract_not_to_compare(tmp_path):
    from leukbench import extract

    root = make_cnmc_folders(tmp_path / "one", {"all": ["1", "2"]})
    fs = extract(root, "handcrafted", cache_dir=tmp_path / "c", progress=False, num_workers=0)
    assert set(fs.y) == {"all"} and len(fs) > 0
    man = root / "m.csv"
    man.write_text("path,label\n" + "".join(f"{i},all\n" for i in sorted(fs.ids)))
    with pytest.raises(DatasetError, match=r"m.csv: only class 'all'; .* give the manifest's label column two"):
        discover(man)


def test_symlink_loops_are_skipped_and_linked_folders_followed(tmp_path, cnmc_folders, cnmc_release):
    (cnmc_folders / "all" / "up").symlink_to("..")  # a loop back to the root
    (cnmc_folders / "all" / "self").symlink_to("self")  # a link to itself
    (cnmc_folders / "all" / "to_hem").symlink_to("../hem")  # hem is walked as its own class
    outside = make_cnmc_folders(tmp_path / "outside", {"all": ["8"]}, per_subject=2)
    (cnmc_folders / "all" / "linked").symlink_to(outside / "all")  # seen once: followed
    (outside / "all" / "loop").symlink_to(cnmc_folders / "all")
    df = discover(cnmc_folders)
    assert len(df) == 20 and df.path.is_unique
    assert (df.label == np.where(df.subject.str.startswith("H"), "hem", "all")).all()
    assert sorted(df.loc[df.subject == "8", "id"]) == ["all/linked/UID_8_1_1_all.bmp", "all/linked/UID_8_2_1_all.bmp"]

    (cnmc_release / "training_data" / "fold_0" / "all" / "back").symlink_to("../../..")
    df = discover(cnmc_release)
    assert len(df) == 17 and df.path.is_unique


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
