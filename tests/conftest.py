"""Shared fixtures: generated C-NMC-like data sets, a light extractor and the optional real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from leukbench.features.base import Extractor, ExtractorConfig, register_extractor

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
CNMC_SUBSET = SHARED_DATA / "cnmc-subset"
PBC_SUBSET = SHARED_DATA / "pbc-subset"

needs_cnmc = pytest.mark.skipif(not CNMC_SUBSET.is_dir(), reason="../shared/data/cnmc-subset not present")
needs_pbc = pytest.mark.skipif(not PBC_SUBSET.is_dir(), reason="../shared/data/pbc-subset not present")


@pytest.fixture
def torch_one_thread():
    """One torch thread for the test, put back after it: on a loaded 2-core machine two threads
    train several times slower than one (use with ``pytestmark = pytest.mark.usefixtures(...)``)."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def cell_image(rng, cls: str, size: int = 64) -> np.ndarray:
    """A synthetic single cell on black: ALL cells larger and more textured than HEM."""
    yy, xx = np.mgrid[:size, :size]
    cy, cx = size / 2 + rng.normal(0, 2), size / 2 + rng.normal(0, 2)
    r = size * (0.36 if cls == "all" else 0.26) * rng.uniform(0.9, 1.1)
    inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    img = np.zeros((size, size, 3), dtype=np.float64)
    base = np.array([150, 110, 190]) if cls == "all" else np.array([170, 140, 200])
    noise = rng.normal(0, 30 if cls == "all" else 10, size=(size, size, 1))
    img[inside] = np.clip(base + noise[inside], 0, 255)
    return img.astype(np.uint8)


def make_cnmc_folders(root: Path, subjects=None, per_subject: int = 3, ext: str = ".bmp", seed: int = 0) -> Path:
    """Class folders with C-NMC file names ``UID_<subject>_<image>_<cell>_<class>``."""
    rng = np.random.default_rng(seed)
    subjects = subjects or {"all": ["1", "2", "3"], "hem": ["H1", "H2", "H3"]}
    for cls, subs in subjects.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for s in subs:
            for k in range(per_subject):
                Image.fromarray(cell_image(rng, cls)).save(root / cls / f"UID_{s}_{k + 1}_1_{cls}{ext}")
    return root


def make_cnmc_release(root: Path, seed: int = 0) -> Path:
    """A miniature of the full C-NMC 2019 release layout."""
    rng = np.random.default_rng(seed)
    tr = root / "training_data"
    for f, subs in enumerate([("1", "H1"), ("2", "H2"), ("3", "H3")]):
        for s in subs:
            cls = "hem" if s.startswith("H") else "all"
            d = tr / f"fold_{f}" / cls
            d.mkdir(parents=True, exist_ok=True)
            for k in range(2):
                Image.fromarray(cell_image(rng, cls)).save(d / f"UID_{s}_{k + 1}_1_{cls}.bmp")
    val = root / "validation_data" / "C-NMC_test_prelim_phase_data"
    val.mkdir(parents=True)
    lines = ["Patient_ID,new_names,labels"]
    for i, (orig, lab) in enumerate([("UID_7_1_1_all.bmp", 1), ("UID_H7_1_1_hem.bmp", 0), ("UID_7_2_1_all.bmp", 1)], 1):
        Image.fromarray(cell_image(rng, "all" if lab else "hem")).save(val / f"{i}.bmp")
        lines.append(f"{orig},{i}.bmp,{lab}")
    (root / "validation_data" / "C-NMC_test_prelim_phase_data_labels.csv").write_text("\n".join(lines) + "\n")
    test = root / "testing_data" / "C-NMC_test_final_phase_data"
    test.mkdir(parents=True)
    for i in range(1, 3):
        Image.fromarray(cell_image(rng, "all")).save(test / f"{i}.bmp")
    return root


class ChannelStats(Extractor):
    """A light real extractor for pipeline tests: per-channel mean/std/percentiles."""

    batch_size = 4

    def __init__(self, segment=False, grayscale=False, fail_after=None):
        self.config = ExtractorConfig(name="chanstats", kind="handcrafted", segment=segment, grayscale=grayscale)
        self.fail_after = fail_after
        self.calls = 0

    @property
    def feature_names(self):
        return [f"chanstats.{c}.{s}" for c in "rgb" for s in ("mean", "std", "p90")]

    def prepare(self, image):
        x = image.reshape(-1, 3).astype(np.float64)
        return np.concatenate([x.mean(0), x.std(0), np.percentile(x, 90, axis=0)]).reshape(3, 3).T.ravel()

    def compute(self, items):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt  # the user presses Ctrl-C mid-run
        return np.stack(items).astype(np.float32)


@register_extractor("chanstats")
def chanstats_factory(*, segment=False, grayscale=False, **_):
    """``chanstats``: what the extraction and command-line tests extract."""
    return ChannelStats(segment=segment, grayscale=grayscale)


@pytest.fixture
def cnmc_folders(tmp_path):
    return make_cnmc_folders(tmp_path / "cnmc")


@pytest.fixture
def cnmc_release(tmp_path):
    return make_cnmc_release(tmp_path / "C-NMC_Leukemia")
