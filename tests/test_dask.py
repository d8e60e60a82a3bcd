"""Extraction and the classifier battery on a real dask.distributed LocalCluster (issue 14).

One cluster of 2 worker processes with one thread each serves the whole module.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np
import pandas as pd
import pytest

distributed = pytest.importorskip("distributed")
cloudpickle = pytest.importorskip("cloudpickle")

from sklearn.base import BaseEstimator, ClassifierMixin  # noqa: E402
from sklearn.naive_bayes import GaussianNB  # noqa: E402

import leukbench  # noqa: E402
from leukbench import cluster, datasets  # noqa: E402
from leukbench.cache import FeatureCache  # noqa: E402
from leukbench.cli import main  # noqa: E402
from leukbench.exceptions import ClusterError  # noqa: E402
from leukbench.extraction._api import load_feature_set  # noqa: E402
from leukbench.extraction._dask import extract_partition  # noqa: E402
from leukbench.extraction._run import run_extractor  # noqa: E402
from leukbench.features.base import create_extractor  # noqa: E402
from leukbench.features.deep import DeepExtractor  # noqa: E402
from leukbench.features.handcrafted import HandcraftedExtractor  # noqa: E402

from .conftest import make_cnmc_folders  # noqa: E402

CLASSIFIERS = "GaussianNB,LinearDiscriminantAnalysis,KNeighborsClassifier"


@pytest.fixture(scope="module")
def client():
    """The module's cluster; classes of this module travel to the workers by value."""
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=40) as lc, distributed.Client(lc) as c:
        yield c
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def sample():
    """24 images of the bundled sample: every sixth, both classes, many subjects."""
    table = datasets.discover(datasets.sample_root())
    sub = table.iloc[::6].reset_index(drop=True)[:24]
    sub.attrs.update(table.attrs)
    return sub


@pytest.fixture(scope="module")
def local_handcrafted(sample, tmp_path_factory):
    """The reference: handcrafted features of the sample, extracted in this process."""
    return leukbench.extract(sample, "handcrafted", cache_dir=tmp_path_factory.mktemp("local"), progress=False,
                             num_workers=0)


def _cache_rows(cache: FeatureCache) -> int:
    return sum(len(pd.read_parquet(f, columns=["id"])) for f in cache.chunk_files())


def test_extraction_on_the_cluster_is_the_local_matrix_and_resumes(client, sample, local_handcrafted, tmp_path):
    fs, summaries = leukbench.extract(sample, "handcrafted", cache_dir=tmp_path, chunk_size=8, progress=False,
                                      client=client, return_summaries=True)
    np.testing.assert_array_equal(fs.X, local_handcrafted.X)  # bit for bit
    assert list(fs.ids) == list(local_handcrafted.ids)
    assert list(fs.pixel_hashes) == list(local_handcrafted.pixel_hashes)
    assert summaries[0].n_extracted == len(sample)
    assert "3 task(s) on 2 worker(s)" in summaries[0].engine_note  # 24 images in partitions of 8
    assert "Dask: 3 task(s)" in "\n".join(summaries[0].lines())
    extractor = create_extractor("handcrafted")
    cache = FeatureCache(tmp_path, sample.attrs["root"], extractor.config, extractor.feature_names)
    assert _cache_rows(cache) == len(sample)  # one row per image, no duplicates
    again = leukbench.extract_all(sample, "handcrafted", cache_dir=tmp_path, chunk_size=8, progress=False,
                                  client=client).summaries[0]
    assert (again.n_extracted, again.n_cached, again.engine_note) == (0, len(sample), None)
    assert client.status == "running"  # a client passed in is left open


class _DiesOnce(HandcraftedExtractor):
    """The handcrafted extractor, except that the first batch computed kills its worker process."""

    def __init__(self, marker: str):
        super().__init__(("morphology", "texture", "color"), "handcrafted")
        self.marker = marker

    def compute(self, items):
        if not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)  # the nanny restarts the worker; Dask retries the task
        return super().compute(items)


def test_a_worker_killed_mid_extraction_still_gives_the_complete_identical_matrix(client, sample,
                                                                                   local_handcrafted, tmp_path):
    marker = tmp_path / "killed"
    killer = _DiesOnce(str(marker))
    assert killer.config == create_extractor("handcrafted").config  # the same cache key
    root = sample.attrs["root"]
    summary = run_extractor(sample, root, killer, tmp_path / "cache", chunk_size=8, progress=False, client=client)
    assert marker.exists()  # a worker really died
    assert (summary.n_extracted, len(summary.skipped)) == (len(sample), 0)
    fs = load_feature_set(sample, root, killer, tmp_path / "cache")
    np.testing.assert_array_equal(fs.X, local_handcrafted.X)
    cache = FeatureCache(tmp_path / "cache", root, killer.config, killer.feature_names)
    assert _cache_rows(cache) == len(sample)  # the retried task wrote its rows once
    client.wait_for_workers(2, timeout=60)


def test_a_worker_that_cannot_see_an_image_names_it():
    blob = cloudpickle.dumps(create_extractor("morphology"))
    with pytest.raises(ClusterError, match="/no/such/mount/x.png: the Dask worker .* cannot see this image"):
        extract_partition(blob, "t", ["/no/such/mount/x.png"], [True], 8)
    # a file the client could not see either is skipped as in a local run
    assert extract_partition(blob, "t", ["/no/such/mount/x.png"], [False], 8).skipped[0][1] == "file not found"


class _RefusesOne(DeepExtractor):
    """efficientnet_lite0 with ``decode="gpu"`` on the CPU (torchvision's decoder, the code path of
    nvJPEG), whose worker garbles the bytes of one JPEG that PIL read: the device decoder refuses it."""

    def __init__(self, victim: str):
        super().__init__("efficientnet_lite0", device="cpu", decode="gpu", batch_size=4)
        self.victim = victim

    def prepare_file(self, path, image):
        item = super().prepare_file(path, image)
        return item._replace(data=np.frombuffer(b"\xff\xd8 not a jpeg", np.uint8)) if self.victim in path else item


@pytest.fixture(scope="module")
def jpeg_table(tmp_path_factory):
    """8 sample cells as JPEGs, a truncated JPEG and a PNG named .jpg, in two class folders."""
    from PIL import Image

    root = tmp_path_factory.mktemp("jpegs")
    for _, row in datasets.load_sample().groupby("label").head(4).iterrows():
        (root / row.label).mkdir(exist_ok=True)
        Image.open(row.path).convert("RGB").save(root / row.label / (os.path.basename(row.path) + ".jpg"), quality=90)
    first = sorted(root.rglob("*.jpg"))[0]
    (first.parent / "truncated.jpg").write_bytes(first.read_bytes()[:300])
    Image.open(first).save(first.parent / "png-inside.jpg", format="PNG")
    return datasets.discover(str(root))


def test_a_jpeg_the_device_decoder_refuses_is_skipped_alone_on_the_cluster(client, jpeg_table, tmp_path):
    """``--decode gpu`` on Dask: the refused JPEG and the unreadable one are skipped with their reasons,
    the other images of their tasks extracted and cached, as in a local run."""
    pytest.importorskip("torchvision")
    from leukbench.features.deep._decode import DEVICE_DECODE_FAILED

    root = jpeg_table.attrs["root"]
    victim = os.path.basename(sorted(jpeg_table["path"])[2])
    local = run_extractor(jpeg_table, root, _RefusesOne(victim), tmp_path / "local", chunk_size=4, progress=False,
                          num_workers=0)
    summary = run_extractor(jpeg_table, root, _RefusesOne(victim), tmp_path / "dask", chunk_size=4,
                            progress=False, client=client)
    assert "3 task(s)" in summary.engine_note  # 10 images in tasks of 4: each bad one shares a task
    assert summary.n_extracted == local.n_extracted == len(jpeg_table) - 2  # the PNG inside a .jpg is read
    skipped = pd.read_csv(summary.skipped_csv).sort_values("id").reset_index(drop=True)
    pd.testing.assert_frame_equal(skipped, pd.read_csv(local.skipped_csv).sort_values("id").reset_index(drop=True))
    kinds = dict(zip(skipped["id"].map(os.path.basename), skipped["kind"]))
    assert kinds.keys() == {victim, "truncated.jpg"} and kinds[victim] == DEVICE_DECODE_FAILED
    assert "--decode cpu" in skipped.loc[skipped["id"].str.endswith(victim), "reason"].iloc[0]
    extractor = _RefusesOne(victim)
    on_cluster = load_feature_set(jpeg_table, root, extractor, tmp_path / "dask")
    reference = load_feature_set(jpeg_table, root, extractor, tmp_path / "local")
    assert list(on_cluster.ids) == list(reference.ids) and len(on_cluster) == len(jpeg_table) - 2
    np.testing.assert_allclose(on_cluster.X, reference.X, rtol=1e-4, atol=1e-5)


def _comparable(result):
    timeless = [c for c in result.table.columns if "Time" not in c]
    folds = [c for c in result.folds.columns if "time" not in c.lower()]
    return result.table[timeless], result.folds[folds], result.predictions


def test_compare_on_the_cluster_is_the_local_result_and_resumes(client, local_handcrafted, tmp_path):
    options = dict(classifiers=CLASSIFIERS, cv=3, n_bootstrap=0, progress=False)
    local = leukbench.compare(local_handcrafted, cache_dir=False, **options)
    on_cluster = leukbench.compare(local_handcrafted, cache_dir=tmp_path, client=client, **options)
    for a, b in zip(_comparable(local), _comparable(on_cluster)):
        pd.testing.assert_frame_equal(a, b)
    assert (on_cluster.n_cached, on_cluster.n_computed) == (0, 9)
    again = leukbench.compare(local_handcrafted, cache_dir=tmp_path, client=client, **options)
    assert (again.n_cached, again.n_computed) == (9, 0)  # every fit landed in the fold cache


class _Sleepy(ClassifierMixin, BaseEstimator):
    """A fit that would take ten minutes."""

    def fit(self, X, y):
        time.sleep(600)
        return self

    def predict(self, X):  # pragma: no cover - never reached
        return np.zeros(len(X), dtype=int)


class _Broken(ClassifierMixin, BaseEstimator):
    """A fit that fails."""

    def fit(self, X, y):
        raise RuntimeError("broken on purpose")

    def predict(self, X):  # pragma: no cover - never reached
        return np.zeros(len(X), dtype=int)


def test_the_timeout_stops_a_fit_on_a_worker_and_a_failing_fit_is_isolated(client, local_handcrafted):
    options = dict(cv=2, n_bootstrap=0, progress=False, cache_dir=False)
    local = leukbench.compare(local_handcrafted, classifiers="GaussianNB", **options)
    t0 = time.perf_counter()
    result = leukbench.compare(local_handcrafted, classifiers={"GaussianNB": GaussianNB(), "Broken": _Broken(),
                                                               "Sleepy": _Sleepy()}, client=client, timeout=2,
                               **options)
    assert time.perf_counter() - t0 < 150  # not the ten minutes each sleepy fit wanted
    status = {m: s.split(":")[0] for m, s in zip(result.table["Model"], result.table["Status"])}
    assert status == {"GaussianNB": "ok", "Broken": "failed", "Sleepy": "timeout"}
    assert "broken on purpose" in " ".join(result.folds.loc[result.folds["classifier"] == "Broken", "error"])
    mine = result.predictions[result.predictions["classifier"] == "GaussianNB"].reset_index(drop=True)
    pd.testing.assert_frame_equal(mine, local.predictions.reset_index(drop=True))


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_without_the_extra_scheduler_is_one_line_naming_it(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    data = make_cnmc_folders(tmp_path / "d", per_subject=1)
    assert main(["extract", str(data), "--features", "morphology", "--scheduler", "local:2", "-q",
                 "--cache-dir", str(tmp_path / "c")]) == 2
    assert 'pip install "leukbench[dask]"' in _one_line_error(capsys)


def test_an_unreachable_or_malformed_scheduler_is_one_line_naming_it(monkeypatch, capsys, tmp_path,
                                                                     local_handcrafted):
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", 0.5)
    data = make_cnmc_folders(tmp_path / "d", per_subject=1)
    common = [str(data), "--features", "morphology", "-q", "--cache-dir", str(tmp_path / "c")]
    assert main(["extract", *common, "--scheduler", "tcp://127.0.0.1:9"]) == 2
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in _one_line_error(capsys)
    assert main(["extract", *common, "--scheduler", "127.0.0.1:8786"]) == 2
    assert "--scheduler must be 'tcp://HOST:PORT'" in _one_line_error(capsys)
    with pytest.raises(ClusterError, match="tcp://127.0.0.1:9"):
        leukbench.compare(local_handcrafted, classifiers="GaussianNB", cv=2, scheduler="tcp://127.0.0.1:9",
                          cache_dir=False, progress=False)


def test_local_n_starts_a_cluster_of_n_processes_and_closes_it():
    with cluster.connect("local:1") as own:
        assert len(own.scheduler_info()["workers"]) == 1
        assert own.submit(os.getpid).result() != os.getpid()  # a worker process, not this one
    assert own.status == "closed"
