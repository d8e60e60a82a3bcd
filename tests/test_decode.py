"""``decode="cpu" | "gpu" | "auto"``: JPEGs decoded and resized by torchvision as tensors (on the CPU here).

The CPU device runs the same code as CUDA with torchvision's CPU decoder, so
these tests check the tensor path without a GPU; nvJPEG itself is only run by
``benchmarks/bench_gpu.py`` on a device.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import leukbench
from leukbench import cli
from leukbench.datasets import load_sample
from leukbench.exceptions import InvalidParameterError
from leukbench.features.base import create_extractor
from leukbench.images import load_image, to_grayscale

from .conftest import PBC_SUBSET

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from leukbench.features.deep import _decode  # noqa: E402  (after the importorskip)

pytestmark = [pytest.mark.usefixtures("torch_one_thread"),
              # the test's own calls of torchvision.io (leukbench silences the deprecation in its calls)
              pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning")]

BACKBONE = "efficientnet_lite0"


def _jpegs(n: int):
    """Real JPEGs: pbc-subset's when present, else the bundled sample's cells saved as JPEG q90."""
    if PBC_SUBSET.is_dir():
        paths = sorted(PBC_SUBSET.rglob("*.jpg"))
        return [paths[i] for i in np.linspace(0, len(paths) - 1, n).astype(int)]
    return None


@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory):
    """Two class folders of 4 real JPEGs each (copies: other tests add files beside them)."""
    root = tmp_path_factory.mktemp("jpegs")
    real = _jpegs(8)
    if real is not None:
        for k, p in enumerate(real):
            dst = root / ("a" if k % 2 else "b") / p.name
            dst.parent.mkdir(exist_ok=True)
            shutil.copy(p, dst)
        return root
    for _, row in load_sample().groupby("label").head(4).iterrows():
        dst = root / row.label / (Path(row.path).stem + ".jpg")
        dst.parent.mkdir(exist_ok=True)
        Image.open(row.path).convert("RGB").save(dst, quality=90)
    return root


def _extract(folder, cache, **options):
    return leukbench.extract(str(folder), BACKBONE, device="cpu", cache_dir=str(cache), progress=False,
                             num_workers=0, **options)


def test_auto_on_the_cpu_is_the_pil_path_bit_for_bit(jpeg_folder, tmp_path):
    auto = create_extractor(BACKBONE, device="cpu")
    assert auto.decode == "cpu" and "decode" not in auto.config.to_dict()["options"]
    assert auto.config.cache_key() == create_extractor(BACKBONE, device="cpu", decode="cpu").config.cache_key()
    assert "decoded" not in auto.describe()
    fs = _extract(jpeg_folder, tmp_path)
    assert fs.provenance["cache_key"] == auto.config.cache_key()
    # the features of the PIL path as it was: prepare() in the worker, compute() on the arrays
    expected = auto.compute([auto.prepare(load_image(p)) for p in fs.paths])
    np.testing.assert_array_equal(fs.X, expected)


def test_gpu_decode_has_its_own_key_and_label(jpeg_folder):
    cpu = create_extractor(BACKBONE, device="cpu")
    gpu = create_extractor(BACKBONE, device="cpu", decode="gpu")
    assert gpu.decode == "gpu"
    assert gpu.config.cache_key() != cpu.config.cache_key()
    assert gpu.config.to_dict()["options"]["decode"] == "gpu:torchvision-cpu"
    assert "JPEGs decoded by torchvision" in gpu.describe()
    assert _decode.decode_key("cuda:0") == "gpu:nvjpeg"
    from leukbench.reporting.provenance import ExtractorInfo  # the report's and run.json's label

    assert "decoded by torchvision-cpu" in ExtractorInfo.from_config(gpu.config.to_dict()).input_notes()
    assert not any("decoded" in n for n in ExtractorInfo.from_config(cpu.config.to_dict()).input_notes())


def test_gpu_decode_is_close_to_pil_on_real_jpegs(jpeg_folder, tmp_path):
    """Measured on 400 pbc-subset JPEGs: the decoded pixels are PIL's exactly (both libjpeg-turbo),
    the torch resize differs from PIL's by one grey level in ~14 % of the pixels (2-4 levels in at
    most 2 pixels of an image); the features by cosine >= 0.9979 and at most 7 % of the largest
    feature (docs/performance.md). On the bundled sample's 450 px cells saved as JPEG (the data
    when pbc-subset is absent, as in CI): at most 4 levels, more than one level in at most 73 of
    the 150,528 values (0.05 %). Tolerances here: 4 grey levels, more than one level in under
    0.1 % of the values, cosine 0.99, 10 % of the largest feature."""
    pre = create_extractor(BACKBONE, device="cpu").preprocessing
    for path in sorted(jpeg_folder.rglob("*.jpg")):
        image = load_image(path)
        item = _decode.encode_item(str(path), image, 4096)
        assert item.kind == "jpeg"
        (out,), errors = _decode.DeviceDecoder(pre, "cpu")([item])
        assert not errors
        diff = np.abs(out.permute(1, 2, 0).numpy().astype(int) - pre.resize_crop(image).astype(int))
        assert diff.max() <= 4 and (diff > 1).mean() < 1e-3 and 0 < (diff > 0).mean() < 0.3
    a = _extract(jpeg_folder, tmp_path)
    b = _extract(jpeg_folder, tmp_path, decode="gpu")
    assert list(a.ids) == list(b.ids) and len(b) == 8
    cos = (a.X * b.X).sum(1) / np.linalg.norm(a.X, axis=1) / np.linalg.norm(b.X, axis=1)
    assert cos.min() > 0.99
    assert 0 < np.abs(a.X - b.X).max() < 0.1 * np.abs(a.X).max()
    # the audit's fingerprints stay on the CPU path: identical whatever the decoder
    assert list(a.pixel_hashes) == list(b.pixel_hashes) and list(a.dhashes) == list(b.dhashes)
    assert b.provenance["extractor"]["options"]["decode"] == "gpu:torchvision-cpu"


def test_mixed_jpeg_png_bmp_folder(jpeg_folder, tmp_path):
    mixed = tmp_path / "mixed"
    shutil.copytree(jpeg_folder, mixed)
    first = sorted(mixed.rglob("*.jpg"))[:2]
    from torchvision.io import ImageReadMode, decode_jpeg, read_file

    # lossless copies of the pixels torchvision decodes (PIL's too here, but not necessarily elsewhere)
    rgb = [decode_jpeg(read_file(str(p)), mode=ImageReadMode.RGB).permute(1, 2, 0).numpy() for p in first]
    Image.fromarray(rgb[0]).save(first[0].with_name("as_png.png"))
    Image.fromarray(rgb[1]).save(first[1].with_name("as_bmp.bmp"))
    Image.fromarray(rgb[1]).convert("L").save(first[1].with_name("gray.png"))
    fs = _extract(mixed, tmp_path / "c", decode="gpu")
    assert len(fs) == 11
    X = pd.DataFrame(fs.X, index=fs.ids)
    ids = {Path(i).name: i for i in fs.ids}
    # the lossless copy has the JPEG's pixels: the same resize on the device, the same features
    np.testing.assert_allclose(X.loc[ids["as_png.png"]], X.loc[ids[first[0].name]], rtol=0, atol=1e-5)
    np.testing.assert_allclose(X.loc[ids["as_bmp.bmp"]], X.loc[ids[first[1].name]], rtol=0, atol=1e-5)


def test_grayscale_on_the_device_is_pils_luma(jpeg_folder, tmp_path):
    path = sorted(jpeg_folder.rglob("*.jpg"))[0]
    image = load_image(path)
    chw = torch.from_numpy(np.array(image)).permute(2, 0, 1)
    np.testing.assert_array_equal(_decode.luma(chw)[0].numpy(), to_grayscale(image))
    fs = _extract(jpeg_folder, tmp_path, decode="gpu", grayscale=True)
    ref = _extract(jpeg_folder, tmp_path, grayscale=True)
    cos = (fs.X * ref.X).sum(1) / np.linalg.norm(fs.X, axis=1) / np.linalg.norm(ref.X, axis=1)
    assert cos.min() > 0.99


def test_a_corrupt_jpeg_is_skipped_and_the_rest_survives(jpeg_folder, tmp_path):
    folder = tmp_path / "bad"
    shutil.copytree(jpeg_folder, folder)
    good = sorted(folder.rglob("*.jpg"))[0]
    (good.parent / "broken.jpg").write_bytes(good.read_bytes()[:300])
    fs, (summary,) = leukbench.extract(str(folder), BACKBONE, device="cpu", decode="gpu", progress=False,
                                       cache_dir=str(tmp_path / "c"), num_workers=0, return_summaries=True)
    assert len(fs) == 8 and summary.n_extracted == 8
    skipped = pd.read_csv(summary.skipped_csv)
    assert len(skipped) == 1 and skipped["id"].iloc[0].endswith("broken.jpg")
    assert "broken.jpg" in skipped["reason"].iloc[0]


def test_an_image_the_device_decoder_refuses_is_skipped_alone(jpeg_folder, tmp_path, monkeypatch):
    """PIL reads the file, torchvision does not: one skipped row, the batch's other images kept."""
    from leukbench.features.deep import _extractor

    real = _decode.encode_item
    victim = sorted(jpeg_folder.rglob("*.jpg"))[3].name

    def garbled(path, image, large_side):
        item = real(path, image, large_side)
        return item._replace(data=np.frombuffer(b"\xff\xd8 not a jpeg", np.uint8)) if victim in path else item

    monkeypatch.setattr(_extractor, "encode_item", garbled)
    fs, (summary,) = leukbench.extract(str(jpeg_folder), BACKBONE, device="cpu", decode="gpu", progress=False,
                                       cache_dir=str(tmp_path / "c"), num_workers=0, return_summaries=True)
    assert len(fs) == 7 and victim not in " ".join(fs.ids)
    skipped = pd.read_csv(summary.skipped_csv)
    assert len(skipped) == 1 and skipped["kind"].iloc[0] == _decode.DEVICE_DECODE_FAILED
    assert victim in skipped["reason"].iloc[0] and "--decode cpu" in skipped["reason"].iloc[0]


@pytest.mark.parametrize("option, value, named", [
    ("segment", True, "segment=True"),
    ("stain_norm", "reinhard", "stain_norm='reinhard'"),
])
def test_options_that_need_pil_are_refused_with_gpu_decode(option, value, named):
    with pytest.raises(InvalidParameterError) as err:
        create_extractor(BACKBONE, device="cpu", decode="gpu", **{option: value}).check()
    message = str(err.value)
    assert "\n" not in message and "decode 'gpu'" in message and named in message and "--decode cpu" in message
    # auto falls back to the PIL path for them (it is gpu only where it can be)
    assert create_extractor(BACKBONE, device="cpu", decode="auto", **{option: value}).decode == "cpu"


def test_unknown_decode_and_the_command_line(jpeg_folder, capsys, tmp_path):
    with pytest.raises(InvalidParameterError, match="decode must be one of auto, cpu, gpu"):
        create_extractor(BACKBONE, device="cpu", decode="nvjpeg").check()
    args = cli.build_parser().parse_args(["extract", "--decode", "gpu"])
    assert args.decode == "gpu"
    assert cli.build_parser().parse_args(["extract"]).decode == "auto"
    code = cli.main(["extract", str(jpeg_folder), "--decode", "gpu", "--segment", "--device", "cpu",
                     "--cache-dir", str(tmp_path / "c"), "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--decode" in err and "segment" in err


def test_a_model_trained_without_decode_rebuilds_the_pil_path():
    from leukbench.models._features import creation_options

    spec = {"name": BACKBONE, "config": {"weights": "imagenet", "options": {}}}
    assert creation_options(spec)["decode"] == "cpu"
    spec["config"]["options"]["decode"] = "gpu:nvjpeg"
    assert creation_options(spec)["decode"] == "gpu"


def test_a_model_of_nvjpeg_features_is_refused_where_they_cannot_be_made_again():
    from leukbench.exceptions import BundleError
    from leukbench.models._features import rebuild_extractors

    config = create_extractor(BACKBONE, device="cpu", decode="gpu").config.to_dict()
    config["options"]["decode"] = "gpu:nvjpeg"  # trained on a CUDA machine
    with pytest.raises(BundleError, match="decode='gpu:nvjpeg'.*'gpu:torchvision-cpu'"):
        rebuild_extractors([{"name": BACKBONE, "config": config}], device="cpu")


def test_the_command_line_passes_decode_to_the_library(jpeg_folder, tmp_path, monkeypatch, capsys):
    import functools

    import leukbench.extraction
    from leukbench.exceptions import LeukbenchError

    real, seen = leukbench.extraction.extract_all, {}

    @functools.wraps(real)
    def spy(*args, **kwargs):
        seen.update(kwargs)
        raise LeukbenchError("stop here")

    monkeypatch.setattr(leukbench.extraction, "extract_all", spy)
    assert cli.main(["extract", str(jpeg_folder), "--decode", "gpu", "-q"]) == 2
    assert seen["decode"] == "gpu"
    assert cli.main(["extract", str(jpeg_folder), "-q"]) == 2
    assert seen["decode"] == "auto"
    capsys.readouterr()
