"""Odd files (issue 9, items 1 and 6): names that are not UTF-8, empty files, link loops,
float TIFFs, manifests with empty labels or in Latin-1, text files as weights, links outside."""

import os
import shutil
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest
from PIL import Image, UnidentifiedImageError

from leukbench import cli
from leukbench.datasets import DatasetError, discover, sample_root, summarize
from leukbench.exceptions import ImageReadError, WeightsUnavailableError
from leukbench.images import load_image

BAD = b"UID_11_99_1_\xff_all.png"  # a Latin-1 byte: not valid UTF-8


def _small_folder(root, per_subject=2, subjects=3):
    """``root/{all,hem}`` with ``per_subject`` sample images of ``subjects`` subjects per class."""
    for cls in ("all", "hem"):
        by_subject = defaultdict(list)
        for name in sorted(os.listdir(sample_root() / cls)):
            by_subject[name.split("_")[1]].append(name)
        (root / cls).mkdir(parents=True)
        for subject in sorted(by_subject)[:subjects]:
            for name in by_subject[subject][:per_subject]:
                shutil.copy(sample_root() / cls / name, root / cls / name)
    return root


def _add_undecodable(root):
    src = os.path.join(str(root), "all", sorted(os.listdir(root / "all"))[0])
    shutil.copy(src, os.path.join(os.fsencode(str(root)), b"all", BAD))


def test_undecodable_name_is_left_out_and_reported(tmp_path):
    root = _small_folder(tmp_path / "cells")
    _add_undecodable(root)
    with pytest.warns(UserWarning, match=r"1 file\(s\) left out.*all/UID_11_99_1_\\xff_all\.png"):
        df = discover(root)
    assert len(df) == 12 and df.attrs["undecodable_names"] == ["all/UID_11_99_1_\\xff_all.png"]
    for col in ("path", "id"):
        df[col].str.encode("utf-8")  # every name in the table can be written as UTF-8
    assert "1 left out (names not valid UTF-8)" in summarize(df)
    # a manifest written from the ids reads back the same images
    (root / "m.csv").write_text("path,label\n" + "".join(f"{i},{c}\n" for i, c in zip(df.id, df.label)))
    assert discover(root / "m.csv")["id"].tolist() == df["id"].tolist()


def test_undecodable_folder_names_and_root(tmp_path):
    root = _small_folder(tmp_path / "cells")
    os.mkdir(os.path.join(os.fsencode(str(root)), b"all", b"sub\xe9"))
    shutil.copy(root / "all" / sorted(os.listdir(root / "all"))[0],
                os.path.join(os.fsencode(str(root)), b"all", b"sub\xe9", b"x.png"))
    with pytest.warns(UserWarning, match=r"all/sub\\xe9"):
        assert len(discover(root)) == 12
    bad_root = os.fsdecode(os.path.join(os.fsencode(str(tmp_path)), b"caf\xe9"))
    os.rename(root, bad_root)
    with pytest.raises(DatasetError, match=r"caf\\xe9: the folder's path is not valid UTF-8"):
        discover(bad_root)


def test_extract_and_compare_run_with_an_undecodable_name(tmp_path, capsys):
    root = _small_folder(tmp_path / "cells")
    _add_undecodable(root)
    cache, out = tmp_path / "cache", tmp_path / "out"
    common = ["--features", "handcrafted", "--cache-dir", str(cache)]
    warning = f"leukbench: warning: {root}: 1 file(s) left out"  # the command line's one-line form of it
    assert cli.main(["extract", str(root), *common]) == 0
    err = capsys.readouterr().err
    assert warning in err and "not valid UTF-8" in err and "UserWarning" not in err
    assert cli.main(["compare", str(root), *common, "--classifiers", "LogisticRegression",
                     "--cv", "3", "--out", str(out)]) == 0
    assert warning in capsys.readouterr().err
    predictions = pd.read_csv(out / "predictions.csv", encoding="utf-8")
    assert predictions["id"].nunique() == 12 and not predictions["id"].str.contains("xff").any()
    skipped = out / "skipped_images.csv"
    assert not skipped.exists() or "\\xff" not in skipped.read_text(encoding="utf-8")


def _reason(path):
    with pytest.raises(ImageReadError) as info:
        load_image(path)
    return info.value.kind, str(info.value)


def test_empty_file_and_link_loop_have_their_own_reasons(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    assert _reason(tmp_path / "empty.png") == (
        "empty file", f"{tmp_path / 'empty.png'}: empty file (0 bytes); copy the image again or remove it "
                      "from the dataset")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    assert _reason(tmp_path / "junk.png")[0] == "not a recognised image format"
    os.symlink("loop.png", tmp_path / "loop.png")
    kind, msg = _reason(tmp_path / "loop.png")
    assert kind == "symbolic link loop" and "loop.png: a symbolic-link loop" in msg


def test_float32_rgb_tiff_is_read_with_tifffile(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    pixels = np.random.default_rng(0).random((20, 30, 3)).astype(np.float32)
    tifffile.imwrite(tmp_path / "f.tif", pixels, photometric="rgb")
    with pytest.raises(UnidentifiedImageError):  # PIL alone cannot
        Image.open(tmp_path / "f.tif").load()
    image = load_image(tmp_path / "f.tif")
    assert image.shape == (20, 30, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, (pixels * 255).round().astype(np.uint8))
    (tmp_path / "bad.tif").write_bytes(b"II*\x00garbage")
    assert _reason(tmp_path / "bad.tif")[0] == "not a recognised image format"


def test_float_tiff_without_tifffile_says_so(tmp_path, monkeypatch):
    import sys

    (tmp_path / "f.tif").write_bytes(b"II*\x00garbage")
    monkeypatch.setitem(sys.modules, "tifffile", None)  # import fails
    kind, msg = _reason(tmp_path / "f.tif")
    assert kind == "TIFF needs tifffile" and "install tifffile" in msg


def _manifest_folder(tmp_path):
    root = _small_folder(tmp_path / "m")
    return root, sorted(f"{c}/{n}" for c in ("all", "hem") for n in os.listdir(root / c))


def test_manifest_row_with_empty_label_is_an_error_naming_the_line(tmp_path):
    root, files = _manifest_folder(tmp_path)
    rows = [f"{f},{f.split('/')[0]}" for f in files]
    rows[2] = f"{files[2]},"
    (root / "m.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(DatasetError, match=r"m\.csv:4: image '.*' has an empty label; give its class"):
        discover(root / "m.csv")
    rows[2] = f"{files[2]},,unlabeled"  # an explicitly unlabeled image stays allowed
    (root / "m.csv").write_text("path,label,split\n" + "\n".join(r if r.count(",") == 2 else r + ","
                                                                 for r in rows) + "\n")
    df = discover(root / "m.csv")
    assert (df["split"] == "unlabeled").sum() == 1


def test_latin1_manifest_is_read_with_a_warning(tmp_path):
    root, files = _manifest_folder(tmp_path)
    text = "path,label,subject\n" + "".join(f"{f},{f.split('/')[0]},Jos\u00e9{i % 3}\n" for i, f in enumerate(files))
    (root / "m.csv").write_bytes(text.encode("latin-1"))
    with pytest.warns(UserWarning, match=r"m\.csv: not UTF-8 .*read as Latin-1"):
        df = discover(root / "m.csv")
    assert len(df) == 12 and set(df["subject"]) == {"Jos\u00e90", "Jos\u00e91", "Jos\u00e92"}


def test_text_file_as_weights_is_not_a_torch_weights_file(tmp_path):
    pytest.importorskip("torch")
    from leukbench.features.deep._state_dict import load_state_dict_file

    path = tmp_path / "weights.txt"
    path.write_text("path,label\n")  # torch's unpickler reads this as opcodes ("weights only load failed")
    with pytest.raises(WeightsUnavailableError, match="is not a torch file \\(a text file, not a torch weights "
                                                      "file\\)") as info:
        load_state_dict_file(path)
    assert "pickled Python objects" not in str(info.value)


def test_links_outside_the_root_are_followed_and_counted(tmp_path):
    root = _small_folder(tmp_path / "cells")
    elsewhere = _small_folder(tmp_path / "elsewhere", per_subject=1, subjects=1)
    os.symlink(elsewhere / "all", root / "all" / "more")  # a folder outside
    one = sorted(os.listdir(elsewhere / "hem"))[0]
    os.symlink(elsewhere / "hem" / one, root / "hem" / "linked.png")  # a file outside
    os.symlink(root / "all" / sorted(os.listdir(root / "all"))[0], root / "hem" / "inside.png")  # inside
    df = discover(root)
    assert len(df) == 15 and df.attrs["outside_links"] == 2
    assert summarize(df).endswith("; 2 through symlinks outside the dataset root")
    (root / "m.csv").write_text("path,label\n" + "".join(f"{i},{c}\n" for i, c in zip(df.id, df.label)))
    assert discover(root / "m.csv").attrs["outside_links"] == 2
    assert "symlinks" not in summarize(discover(sample_root()))
