"""FeatureSet: construction, combination and loading errors."""

import numpy as np
import pytest

from leukbench.exceptions import DatasetError, InvalidParameterError
from leukbench.featureset import FeatureSet


def small(name="a", columns=("a.f0", "a.f1"), ids=("x", "y", "z")):
    n = len(ids)
    return FeatureSet(name, np.arange(n * len(columns)).reshape(n, len(columns)), ["all", "hem", ""][:n],
                      list(ids), ["P1", "H1", ""][:n], ["train", "train", "unlabeled"][:n], list(columns))


def test_combine_keeps_the_common_images_in_the_first_order():
    ab = FeatureSet.combine([small("a"), small("b", ("b.f",), ids=("z", "x"))])
    assert ab.name == "a+b" and ab.ids.tolist() == ["x", "z"]
    assert ab.feature_names == ["a.f0", "a.f1", "b.f"]
    np.testing.assert_array_equal(ab.X, [[0, 1, 1], [4, 5, 0]])


def test_mistakes_are_leukbench_errors_with_the_same_messages(tmp_path):
    with pytest.raises(InvalidParameterError, match=r"^FeatureSet.y has shape \(2,\), expected \(3,\)$"):
        FeatureSet("a", np.zeros((3, 1)), ["all", "hem"], ["x", "y", "z"], None, None, ["f"])
    with pytest.raises(InvalidParameterError, match=r"^FeatureSet.X has shape \(3, 1\), expected \(3, 2\)$"):
        FeatureSet("a", np.zeros((3, 1)), None, ["x", "y", "z"], None, None, ["f", "g"])
    with pytest.raises(InvalidParameterError, match="^FeatureSet.combine needs at least one feature set$"):
        FeatureSet.combine([])
    with pytest.raises(InvalidParameterError, match=r"^cannot combine \['a', 'a'\]: columns \['a.f0', 'a.f1'\] "
                                                    r"would appear twice$"):
        FeatureSet.combine([small(), small()])
    (tmp_path / "empty.parquet").write_bytes(b"")
    with pytest.raises(DatasetError, match="empty.parquet: not a readable Parquet file"):
        FeatureSet.load(tmp_path / "empty.parquet")
    import pandas as pd

    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "plain.parquet")
    with pytest.raises(DatasetError, match=r"plain.parquet: not a leukbench feature set \(no 'leukbench' metadata\)"):
        FeatureSet.load(tmp_path / "plain.parquet")


def test_save_and_load_round_trip(tmp_path):
    fs = small()
    back = FeatureSet.load(fs.save(tmp_path / "fs.parquet"))
    np.testing.assert_array_equal(back.X, fs.X)
    assert back.ids.tolist() == fs.ids.tolist() and back.feature_names == fs.feature_names
    assert back.y.tolist() == fs.y.tolist() and back.subjects.tolist() == fs.subjects.tolist()
