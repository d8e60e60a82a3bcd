"""load_image: every format PIL reads comes back as RGB uint8."""

import numpy as np
import pytest
from PIL import Image

from leukbench.images import ImageReadError, is_image_file, load_image


@pytest.fixture
def rgb():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)


@pytest.mark.parametrize("ext", [".bmp", ".png", ".tif", ".ppm"])
def test_lossless_formats_roundtrip(tmp_path, rgb, ext):
    p = tmp_path / f"x{ext}"
    Image.fromarray(rgb).save(p)
    out = load_image(p)
    assert out.dtype == np.uint8 and out.shape == (20, 30, 3)
    np.testing.assert_array_equal(out, rgb)


def test_jpeg(tmp_path, rgb):
    p = tmp_path / "x.jpg"
    Image.fromarray(rgb).save(p, quality=95)
    out = load_image(p)
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8


def test_grayscale_is_replicated(tmp_path):
    g = np.arange(200, dtype=np.uint8).reshape(10, 20)
    Image.fromarray(g, mode="L").save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png")
    assert out.shape == (10, 20, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], g)


def test_16bit_tiff_scaled_not_clipped(tmp_path):
    g = np.linspace(0, 65535, 64, dtype=np.uint16).reshape(8, 8)
    Image.fromarray(g).save(tmp_path / "g16.tif")
    out = load_image(tmp_path / "g16.tif")
    assert out.dtype == np.uint8 and out.shape == (8, 8, 3)
    assert out.min() == 0 and out.max() == 255
    assert np.all(np.diff(out[..., 0].ravel().astype(int)) >= 0)  # monotone, not wrapped


def test_rgba_composited_on_black(tmp_path):
    a = np.zeros((4, 4, 4), dtype=np.uint8)
    a[..., 0] = 200
    a[:2, :, 3] = 255  # top half opaque red, bottom transparent
    Image.fromarray(a, mode="RGBA").save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    assert out[0, 0].tolist() == [200, 0, 0]
    assert out[3, 0].tolist() == [0, 0, 0]


def test_palette(tmp_path, rgb):
    Image.fromarray(rgb).convert("P").save(tmp_path / "p.gif")
    out = load_image(tmp_path / "p.gif")
    assert out.shape == (20, 30, 3)


def test_exif_rotation_applied(tmp_path):
    arr = np.zeros((10, 20, 3), dtype=np.uint8)
    arr[:, :5] = 255  # white stripe on the left
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 CW when displayed
    im.save(tmp_path / "r.jpg", exif=exif, quality=100)
    out = load_image(tmp_path / "r.jpg")
    assert out.shape == (20, 10, 3)
    assert out[:5].mean() > 200  # the stripe is now on top


@pytest.mark.parametrize(
    "content",
    [b"", b"this is not an image", None],
    ids=["empty", "text", "truncated"],
)
def test_unreadable_files_raise_named_error(tmp_path, rgb, content):
    p = tmp_path / "bad.bmp"
    if content is None:
        Image.fromarray(rgb).save(p)
        p.write_bytes(p.read_bytes()[:100])
    else:
        p.write_bytes(content)
    with pytest.raises(ImageReadError) as err:
        load_image(p)
    assert str(p) in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match="not found"):
        load_image(tmp_path / "nope.png")


def test_is_image_file():
    assert is_image_file("UID_1_1_1_all.BMP")
    assert not is_image_file(".hidden.png")
    assert not is_image_file("README.md")
    assert not is_image_file("labels.csv")


@pytest.mark.parametrize("bits", [10, 12, 14])
def test_high_bit_depth_scaled_to_its_range(tmp_path, bits):
    """12-bit data in a 16-bit file fill 0..255, not the bottom sixteenth of it."""
    top = 2 ** bits - 1
    g = np.linspace(0, top, 64).round().astype(np.uint16).reshape(8, 8)
    Image.fromarray(g).save(tmp_path / "g.tif")
    out = load_image(tmp_path / "g.tif")[..., 0]
    assert out.max() == 255 and out.min() == 0
    np.testing.assert_allclose(out, g * 255.0 / top, atol=0.51)
    # a dimmer image of the same depth keeps its dimness (the bit depth's range, not its max)
    for factor in (0.6, 0.3):
        Image.fromarray((g * factor).round().astype(np.uint16)).save(tmp_path / "dim.tif")
        assert abs(int(load_image(tmp_path / "dim.tif").max()) - round(255 * factor)) <= 1


def test_one_raw_value_one_8bit_value_across_a_camera(tmp_path):
    """Two 16-bit images whose maxima straddle 2**15 map the same raw value alike."""
    a = np.full((16, 16), 30000, np.uint16)
    a[0, 0] = 32767
    b = a.copy()
    b[0, 0] = 32768
    Image.fromarray(a).save(tmp_path / "a.png")
    Image.fromarray(b).save(tmp_path / "b.png")
    va, vb = load_image(tmp_path / "a.png")[5, 5, 0], load_image(tmp_path / "b.png")[5, 5, 0]
    assert va == vb == round(30000 * 255 / 65535)


def test_unreadable_file_is_reported_as_such(tmp_path, monkeypatch):
    from PIL import Image as PILImage

    p = tmp_path / "locked.png"
    PILImage.new("RGB", (4, 4)).save(p)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(p))

    monkeypatch.setattr(PILImage, "open", denied)  # chmod 000 does not stop root, who runs CI
    with pytest.raises(ImageReadError, match="permission denied; make the file readable") as info:
        load_image(p)
    assert info.value.kind == "permission denied"


def test_decompression_bomb_is_reported_with_a_fix(tmp_path, monkeypatch):
    from PIL import Image as PILImage

    PILImage.new("RGB", (64, 64)).save(tmp_path / "big.png")
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 100)  # 64x64 > 2x the limit: an error in PIL
    with pytest.raises(ImageReadError, match="MAX_IMAGE_PIXELS") as info:
        load_image(tmp_path / "big.png")
    assert info.value.kind == "image too large for PIL"


def test_fingerprints_and_colour_live_here_and_keep_their_old_homes():
    from leukbench import audit, images, preprocessing
    from leukbench.exceptions import InvalidParameterError

    assert audit.pixel_hash is images.pixel_hash and audit.difference_hash is images.difference_hash
    assert preprocessing.to_grayscale is images.to_grayscale
    assert preprocessing.grayscale_rgb is images.grayscale_rgb
    assert images.as_rgb_uint8(np.zeros((2, 3), np.uint16)).shape == (2, 3, 3)
    with pytest.raises(InvalidParameterError, match=r"expected an RGB image of shape \(H, W, 3\), got \(2, 3, 5\)"):
        images.to_grayscale(np.zeros((2, 3, 5), np.uint8))
