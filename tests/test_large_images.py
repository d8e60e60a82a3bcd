"""Large images are decoded with bounded memory (issue 9 item 8), normal ones exactly as before."""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest
from PIL import Image

from leukbench.exceptions import ImageReadError
from leukbench.extraction._feed import SEGMENTED_DECODE_SIDE, _ImageDataset, decode_side
from leukbench.features.base import Extractor, ExtractorConfig
from leukbench.images import LARGE_IMAGE_SIDE, load_image

SIDE = 5000  # over LARGE_IMAGE_SIDE, small enough for the default suite


def _picture(h: int, w: int) -> np.ndarray:
    """A compressible RGB picture: gradients and a bright disc (a 'cell')."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.empty((h, w, 3), np.uint8)
    img[..., 0] = (xx * 255 // max(w - 1, 1)).astype(np.uint8)
    img[..., 1] = (yy * 255 // max(h - 1, 1)).astype(np.uint8)
    img[..., 2] = np.where((yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (min(h, w) / 4) ** 2, 230, 20)
    return img


@pytest.fixture(scope="module")
def big_png(tmp_path_factory):
    path = tmp_path_factory.mktemp("large") / "big.png"
    Image.fromarray(_picture(SIDE, SIDE)).save(path, compress_level=1)
    return path


def test_large_png_is_downscaled_with_bounded_memory(big_png):
    tracemalloc.start()
    try:
        arr = load_image(big_png, reduce_to=448)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert arr.shape == (448, 448, 3) and arr.dtype == np.uint8
    # no full-size array was ever made: the full image is 75 MB of uint8
    assert peak < 8 * 2**20, peak
    # the content survives: the disc is in the centre, the background dark
    assert arr[224, 224, 2] > 200 and arr[5, 5, 2] < 40


def test_large_png_without_reduce_to_is_full_size(big_png):
    assert load_image(big_png).shape == (SIDE, SIDE, 3)


def test_images_up_to_the_threshold_are_bit_identical(tmp_path):
    path = tmp_path / "edge.png"
    img = np.random.default_rng(0).integers(0, 256, (LARGE_IMAGE_SIDE, 64, 3), dtype=np.uint8)
    Image.fromarray(img).save(path, compress_level=1)
    out = load_image(path, reduce_to=16)
    assert np.array_equal(out, img) and np.array_equal(out, load_image(path))


def test_large_jpeg_uses_draft_and_keeps_exif_orientation(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(_picture(4200, SIDE)).save(path, quality=80, exif=exif.tobytes())
    full = load_image(path)
    small = load_image(path, reduce_to=500)
    assert full.shape == (SIDE, 4200, 3)  # transposed upright
    assert small.shape[1] == 500 and abs(small.shape[0] - round(500 * SIDE / 4200)) <= 1
    # same orientation: the red gradient runs down the rows in both
    assert small[-1, 250, 0] > small[0, 250, 0] + 100 and full[-1, 2100, 0] > full[0, 2100, 0] + 100


@pytest.mark.parametrize("mode", ["I;16", "P", "L"])
def test_large_images_of_other_modes(tmp_path, mode):
    path = tmp_path / f"big_{mode.replace(';', '')}.png"
    rgb = _picture(SIDE, 4500)
    if mode == "I;16":
        im = Image.fromarray(rgb[..., 0].astype(np.uint16) * 16)  # a 12-bit camera
    elif mode == "P":
        im = Image.fromarray(rgb).quantize(16)
    else:
        im = Image.fromarray(rgb[..., 2])
    im.save(path, compress_level=1)
    arr = load_image(path, reduce_to=300)
    assert arr.shape == (round(300 * SIDE / 4500), 300, 3) and arr.dtype == np.uint8
    assert arr.max() > 150  # scaled like the full image, not left dark


class _Probe(Extractor):
    """Prepares nothing but the decoded shape."""

    def __init__(self, kind: str, input_size: int = 0):
        self.config = ExtractorConfig(name="probe", kind=kind, input_size=input_size)

    def prepare(self, image):
        return image.shape


def test_extraction_decodes_for_what_the_extractor_needs(big_png):
    paths = [str(big_png)]
    deep = _ImageDataset(paths, _Probe("deep", 224), segment=False, grayscale=False)[0]
    assert deep.error is None and deep.item == (448, 448, 3)
    segmented = _ImageDataset(paths, _Probe("deep", 224), segment=True, grayscale=False)
    assert segmented.reduce_to == SEGMENTED_DECODE_SIDE
    # handcrafted features are in pixels and their cache key records no cap: full size
    hand = _ImageDataset(paths, _Probe("handcrafted"), segment=False, grayscale=False)[0]
    assert hand.error is None and hand.item == (SIDE, SIDE, 3)
    assert decode_side(_Probe("handcrafted"), segment=True) is None


def test_decompression_bomb_warning_names_the_file(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1600 px: a warning, not an error
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert load_image(path).shape == (40, 40, 3)
    bombs = [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    assert len(bombs) == 1 and str(path) in str(bombs[0].message), [str(w.message) for w in caught]
    assert bombs[0].filename == __file__  # points at the caller, not at leukbench
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 700)  # over twice the limit: PIL's error stands
    with pytest.raises(ImageReadError) as info:
        load_image(path)
    assert info.value.kind == "image too large for PIL" and str(path) in str(info.value)


def test_bomb_warning_as_error_still_raises(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(Image.DecompressionBombWarning, match="bomb.png"):
            load_image(path)


def test_bench_memory_generates_compressible_large_pngs(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_memory.py"
    spec = importlib.util.spec_from_file_location("bench_memory", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    root = bench.generate(tmp_path, 2, 256)
    files = sorted(root.rglob("*.png"))
    assert len(files) == 2 and {f.parent.name for f in files} == {"a", "b"}
    assert Image.open(files[0]).size == (256, 256) and set(bench.VARIANTS) >= {"lite0", "handcrafted"}
