"""The reduced-data mode (issue 9, item 10): a stratified, subject-preserving, seeded subsample."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from leukbench import cli
from leukbench.datasets import discover, load_sample, sample_root, subsample
from leukbench.exceptions import InvalidParameterError
from leukbench.extraction import extract, extract_all

from .conftest import cell_image, make_cnmc_folders


def _counts(table, column):
    return table[column].value_counts().to_dict()


def _whole_subjects(kept, full):
    """Every subject of ``kept`` has all the images it has in ``full``."""
    return all(n == (full["subject"] == s).sum() for s, n in _counts(kept, "subject").items())


def test_max_per_subject_keeps_at_most_n_per_subject_and_the_smaller_ones_whole():
    full = load_sample()
    kept = subsample(full, max_per_subject=3)
    per_subject = _counts(kept, "subject")
    assert set(per_subject) == set(full["subject"])  # no subject lost
    assert all(n == min(3, (full["subject"] == s).sum()) for s, n in per_subject.items())
    assert kept.attrs["subsample"]["n_kept"] == len(kept) and kept.attrs["subsample"]["n_images"] == 159
    assert kept.attrs["root"] == full.attrs["root"]  # the same dataset, so the same cache


def test_images_without_subject_are_each_their_own_subject(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for k in range(4):
            Image.fromarray(cell_image(rng, "all")).save(tmp_path / cls / f"cell{k}.png")
    full = discover(tmp_path)
    assert (full["subject"] == "").all()
    assert len(subsample(full, max_per_subject=1)) == 8  # one image per "subject": all kept


def test_max_per_class_keeps_whole_subjects_up_to_n():
    full = load_sample()
    for seed in range(5):
        kept = subsample(full, max_per_class=35, seed=seed)
        assert all(0 < n <= 35 for n in _counts(kept, "label").values())
        assert _whole_subjects(kept, full), seed


def test_max_per_class_smaller_than_every_subject_cuts_one_subject():
    full = load_sample()
    kept = subsample(full, max_per_class=4)
    assert _counts(kept, "label") == {"all": 4, "hem": 4}
    assert kept.groupby("label")["subject"].nunique().eq(1).all()


def test_fraction_keeps_about_f_of_each_class_by_whole_subjects():
    full = load_sample()
    kept = subsample(full, fraction=0.5)
    assert _whole_subjects(kept, full)
    for label, n in _counts(full, "label").items():
        assert abs(_counts(kept, "label")[label] - n / 2) <= 6  # within half a subject (~10 images)
    tiny = subsample(full, fraction=0.01)  # at least one subject per class
    assert tiny.groupby("label")["subject"].nunique().to_dict() == {"all": 1, "hem": 1}
    assert len(subsample(full, fraction=1.0)) == 159


def test_same_seed_same_images_other_seed_other_images():
    full = load_sample()
    for kw in ({"max_per_subject": 3}, {"max_per_class": 30}, {"fraction": 0.3}):
        a, b = subsample(full, seed=7, **kw), subsample(full, seed=7, **kw)
        assert a["id"].tolist() == b["id"].tolist(), kw
        assert a["id"].tolist() != subsample(full, seed=8, **kw)["id"].tolist(), kw
    shuffled = full.sample(frac=1.0, random_state=0)  # the order of the table does not matter
    assert sorted(subsample(shuffled, max_per_class=30)["id"]) == sorted(subsample(full, max_per_class=30)["id"])


def test_unlabelled_images_are_kept_as_they_are(tmp_path):
    data = make_cnmc_folders(tmp_path / "d", per_subject=4)
    images = sorted(data.rglob("*.bmp"))
    rows = [f"{p.relative_to(data).as_posix()},,,unlabeled" if "_1_1_" in p.name
            else f"{p.relative_to(data).as_posix()},{p.parent.name},,train" for p in images]
    (data / "m.csv").write_text("path,label,subject,split\n" + "\n".join(rows) + "\n")
    full = discover(data / "m.csv")
    n_unlabelled = int((full["label"] == "").sum())
    assert n_unlabelled == 6
    kept = subsample(full, max_per_subject=1)
    assert int((kept["label"] == "").sum()) == n_unlabelled
    assert kept.attrs["subsample"]["n_unlabeled"] == n_unlabelled


@pytest.mark.parametrize("kw, name", [
    ({"max_per_subject": 0}, "max_per_subject"),
    ({"max_per_class": -1}, "max_per_class"),
    ({"max_per_class": 2.5}, "max_per_class"),
    ({"fraction": 0.0}, "fraction"),
    ({"fraction": 1.5}, "fraction"),
    ({"subsample_seed": -1}, "subsample_seed"),
])
def test_bad_values_name_the_parameter_before_any_work(kw, name, tmp_path):
    with pytest.raises(InvalidParameterError) as info:
        extract_all(tmp_path / "does-not-exist", "chanstats", cache_dir=tmp_path / "c", progress=False, **kw)
    assert info.value.parameter == name and str(info.value).startswith(name)


@pytest.mark.parametrize("flag, value", [("--max-per-subject", "0"), ("--fraction", "0"),
                                         ("--max-per-class", "0"), ("--subsample-seed", "-3")])
def test_bad_values_name_the_flag(flag, value, tmp_path, capsys):
    code = cli.main(["extract", "--features", "chanstats", "--cache-dir", str(tmp_path), "-q", flag, value])
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE and f"{flag} must be" in err and "Traceback" not in err


def test_a_subsample_shares_the_cache_of_the_full_dataset(tmp_path):
    data = make_cnmc_folders(tmp_path / "d", per_subject=4)
    cache = tmp_path / "c"
    small, (s1,) = extract(data, "chanstats", cache_dir=cache, progress=False, num_workers=0,
                           max_per_subject=2, return_summaries=True)
    assert len(small) == s1.n_found == s1.n_extracted == 12
    assert small.provenance["subsample"]["n_kept"] == 12
    full, (s2,) = extract(data, "chanstats", cache_dir=cache, progress=False, num_workers=0,
                          return_summaries=True)
    assert (s2.n_cached, s2.n_extracted) == (12, 12)  # the later full run extracts only the rest
    assert "subsample" not in full.provenance and s2.cache_path == s1.cache_path
    again, (s3,) = extract(data, "chanstats", cache_dir=cache, progress=False, num_workers=0,
                           max_per_subject=2, return_summaries=True)
    assert s3.n_extracted == 0 and again.ids.tolist() == small.ids.tolist()
    by_id = dict(zip(full.ids, full.X))
    assert all(np.array_equal(by_id[i], x) for i, x in zip(small.ids, small.X))


def test_a_discovered_table_passed_in_is_subsampled_too(tmp_path):
    table = load_sample()
    result = extract_all(table, "chanstats", cache_dir=tmp_path, progress=False, num_workers=0,
                         max_per_class=20, subsample_seed=3)
    fs = result.feature_sets["chanstats"]
    assert fs.provenance["subsample"]["seed"] == 3 and fs.provenance["subsample"]["max_per_class"] == 20
    assert pd.Series(fs.y).value_counts().le(20).all()


def test_compare_states_the_subsample_in_run_json_and_report(tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(["compare", str(sample_root()), "--features", "handcrafted", "--classifiers", "GaussianNB",
                     "--max-per-subject", "3", "--cv", "3", "--out", str(out), "--cache-dir", str(tmp_path / "c"),
                     "-q", "--n-bootstrap", "0"])
    stdout = capsys.readouterr().out
    assert code == cli.EXIT_OK
    assert "subsample: kept 48 of 159 images (at most 3 per subject; seed 42" in stdout
    run = json.loads((out / "run.json").read_text())
    recorded = run["feature_sets"][0]["provenance"]["subsample"]
    assert (recorded["n_kept"], recorded["max_per_subject"], recorded["seed"]) == (48, 3, 42)
    assert run["dataset"]["n_images"] == 48
    html = (out / "report.html").read_text()
    assert "Reduced-data mode" in html and "subsample: kept 48 of 159 images" in html


def test_a_subsample_of_a_copied_dataset_is_the_same_images(tmp_path):
    """Ids, not paths, drive the choice: a copy of the dataset elsewhere gives the same subsample."""
    copy = tmp_path / "copy"
    shutil.copytree(sample_root(), copy)
    a = subsample(discover(copy), fraction=0.4)["id"].tolist()
    assert a == subsample(load_sample(), fraction=0.4)["id"].tolist()
