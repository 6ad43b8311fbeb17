"""decode_image (model/images.py) / encode_png (model/png.py): modes, bit depths, EXIF orientation, bad
bytes, size limits."""
from __future__ import annotations

import io
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from model.images import (  # noqa: E402
    ImageDecodeError,
    ImageTooLargeError,
    apply_orientation,
    decode_image,
    resize_lanczos,
)
from model.png import encode_png  # noqa: E402


def pil_bytes(im: Image.Image, fmt: str = "PNG", **params) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **params)
    return buf.getvalue()


def gradient(h=24, w=32, c=3, dtype=np.uint8, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, np.iinfo(dtype).max + 1, (h, w, c), dtype=np.int64).astype(dtype)


def with_chunk(png: bytes, kind: bytes, payload: bytes) -> bytes:
    """Insert a chunk right after IHDR (8-byte signature + 25-byte IHDR chunk)."""
    chunk = struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    return png[:33] + chunk + png[33:]


def fake_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height but holds almost no data: tests header-only checks."""
    png = bytearray(encode_png(np.zeros((2, 2, 3), np.uint8)))
    png[16:24] = struct.pack(">II", width, height)
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    return bytes(png)


# ------------------------------------------------------------------------------------------- modes
@pytest.mark.parametrize("mode,channels", [("L", 1), ("LA", 2), ("RGB", 3), ("RGBA", 4), ("1", 1)])
def test_plain_modes(mode, channels):
    im = Image.fromarray(gradient(c=4)).convert(mode)
    out = decode_image(pil_bytes(im))
    assert out.shape == (24, 32, channels) and out.dtype == np.uint8
    expected = np.asarray(im.convert("L") if mode == "1" else im).reshape(24, 32, channels)
    assert np.array_equal(out, expected)


def test_palette_without_and_with_transparency():
    rgb = Image.fromarray(gradient()).convert("P", palette=Image.ADAPTIVE, colors=16)
    out = decode_image(pil_bytes(rgb))
    assert out.shape == (24, 32, 3)
    assert np.array_equal(out, np.asarray(rgb.convert("RGB")))
    gif = pil_bytes(rgb, "GIF", transparency=0)
    out = decode_image(gif)
    assert out.shape == (24, 32, 4) and out.dtype == np.uint8
    assert set(np.unique(out[..., 3])) <= {0, 255} and (out[..., 3] == 0).any()


def test_animation_gives_first_frame():
    frames = [Image.new("RGB", (8, 6), color) for color in ((255, 0, 0), (0, 255, 0))]
    data = pil_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:])
    out = decode_image(data)
    assert out.shape[:2] == (6, 8) and tuple(out[0, 0, :3]) == (255, 0, 0)


def test_cmyk_jpeg_becomes_rgb():
    cmyk = Image.fromarray(gradient(c=4), "CMYK")
    out = decode_image(pil_bytes(cmyk, "JPEG", quality=95))
    assert out.shape == (24, 32, 3) and out.dtype == np.uint8


def test_16bit_gray_png_stays_16bit():
    a = gradient(c=1, dtype=np.uint16)
    out = decode_image(pil_bytes(Image.fromarray(a[..., 0])))
    assert out.dtype == np.uint16 and np.array_equal(out, a)


@pytest.mark.parametrize("channels", [3, 4])
def test_16bit_color_png_stays_16bit_and_rgb_ordered(channels):
    a = gradient(c=channels, dtype=np.uint16)
    bgr = a[..., [2, 1, 0, 3][:channels]]
    ok, data = cv2.imencode(".png", np.ascontiguousarray(bgr))
    out = decode_image(data.tobytes())
    assert out.dtype == np.uint16 and np.array_equal(out, a)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_encode_decode_round_trip(channels, dtype):
    a = gradient(c=channels, dtype=dtype)
    data = encode_png(a, dpi=(300, 300))
    assert np.array_equal(decode_image(data), a)
    with Image.open(io.BytesIO(data)) as im:
        assert im.size == (32, 24)
        assert tuple(round(d) for d in im.info["dpi"]) == (300, 300)
    if channels != 2:  # OpenCV reads 1/3/4 channels; an independent decoder for our writer
        ref = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED).reshape(24, 32, channels)
        if channels >= 3:
            ref = ref[..., [2, 1, 0, 3][:channels]]
        assert ref.dtype == dtype and np.array_equal(ref, a)


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("dtype,channels", [(np.uint8, 3), (np.uint16, 4), (np.uint8, 1)])
def test_bands_deflated_in_parallel_make_one_valid_png(threads, dtype, channels):
    """Large enough (3.4 MB) to be cut into bands of 1 MiB at least, away from 256-row block boundaries."""
    a = gradient(h=1029, w=3300 // (channels * np.dtype(dtype).itemsize), c=channels, dtype=dtype, seed=3)
    a[200:900:7] = a[199:899:7]  # rows equal to the one above: the Up filter's zeros across band edges
    data = encode_png(a, threads=threads)
    assert np.array_equal(decode_image(data), a)
    # zlib checks the stream and its Adler-32 (combined from the bands'); any slip raises here
    idat = data[data.index(b"IDAT") - 4:]
    length = struct.unpack(">I", idat[:4])[0]
    filtered = zlib.decompress(idat[8:8 + length])
    assert len(filtered) == a.shape[0] * (a.shape[1] * channels * a.dtype.itemsize + 1)
    assert encode_png(a, threads=1) != data  # really deflated in bands (the pixels are the same)


def test_adler32_of_bands_combines_like_zlib():
    from model.png import _adler32_combine

    rng = np.random.default_rng(0)
    for _ in range(200):
        x, y = rng.bytes(int(rng.integers(0, 70000))), rng.bytes(int(rng.integers(0, 70000)))
        assert _adler32_combine(zlib.adler32(x), zlib.adler32(y), len(y)) == zlib.adler32(x + y)


def test_encode_png_accepts_2d_and_refuses_other_dtypes():
    assert decode_image(encode_png(np.full((3, 5), 7, np.uint8))).shape == (3, 5, 1)
    with pytest.raises(ValueError):
        encode_png(np.zeros((3, 5, 3), np.float32))


# ------------------------------------------------------------------------------------- orientation
@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_pillow(orientation):
    im = Image.fromarray(gradient(h=5, w=7))
    exif = im.getexif()
    exif[0x0112] = orientation
    data = pil_bytes(im, "PNG", exif=exif.tobytes())
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))
    assert np.array_equal(decode_image(data), expected)
    assert np.array_equal(apply_orientation(np.asarray(im), orientation), expected)


def test_exif_rotated_jpeg():
    im = Image.fromarray(gradient(h=16, w=40))
    exif = im.getexif()
    exif[0x0112] = 6  # camera held upright: stored landscape, shown portrait
    out = decode_image(pil_bytes(im, "JPEG", exif=exif.tobytes(), quality=95))
    assert out.shape == (40, 16, 3)


def test_exif_rotated_16bit_png():
    a = gradient(h=5, w=7, dtype=np.uint16)
    exif = Image.Exif()
    exif[0x0112] = 8
    data = with_chunk(encode_png(a), b"eXIf", exif.tobytes())
    out = decode_image(data)
    assert out.dtype == np.uint16 and np.array_equal(out, np.rot90(a, 1))


# ------------------------------------------------------------------------------------- bad inputs
def _bad_inputs() -> dict[str, bytes]:
    png = pil_bytes(Image.fromarray(gradient(h=64, w=64)))
    jpeg = pil_bytes(Image.fromarray(gradient(h=64, w=64)), "JPEG")
    png16 = encode_png(gradient(h=64, w=64, dtype=np.uint16))
    bad_crc = bytearray(png)
    bad_crc[40] ^= 0xFF
    return {"zero bytes": b"", "truncated png": png[: len(png) // 2],
            "truncated jpeg": jpeg[: len(jpeg) // 2],
            "truncated 16-bit png": png16[: len(png16) // 2], "png header only": png[:40],
            "corrupt png": bytes(bad_crc), "random bytes": np.random.default_rng(1).bytes(5000),
            "text": b"hello, this is not a photo\n" * 10, "jpeg magic only": b"\xff\xd8\xff\xe0"}


@pytest.mark.parametrize("name", list(_bad_inputs()))
def test_undecodable_bytes_raise_image_decode_error(name):
    with pytest.raises(ImageDecodeError) as info:
        decode_image(_bad_inputs()[name])
    assert str(info.value)


def test_max_pixels_is_checked_from_the_header():
    data = fake_header(5000, 4000)  # 20 MP announced, 2x2 stored: a decode would fail, not refuse
    with pytest.raises(ImageTooLargeError, match="20.0 MP"):
        decode_image(data, max_pixels=10_000_000)
    assert decode_image(encode_png(np.zeros((10, 10, 3), np.uint8)), max_pixels=100).shape == (10, 10, 3)


@pytest.mark.parametrize("side", [10_000, 20_000])  # Pillow warns above 89.5 MP, raises above 179 MP
def test_decompression_bombs_are_errors(side):
    with pytest.raises(ImageTooLargeError):
        decode_image(fake_header(side, side))


def test_images_module_does_not_import_torch():
    code = "import sys; import model.images; from model import decode_image; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------------------------------- resizing
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_resize_lanczos_size_and_dtype(channels, dtype):
    a = gradient(h=40, w=60, c=channels, dtype=dtype)
    for size in ((90, 60), (30, 20)):
        out = resize_lanczos(a, size)
        assert out.shape == (size[1], size[0], channels) and out.dtype == dtype
    flat = np.full((40, 60, channels), 1000 if dtype == np.uint16 else 100, dtype)
    assert np.array_equal(resize_lanczos(flat, (33, 22)), np.full((22, 33, channels), flat.flat[0], dtype))
