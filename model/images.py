"""Image bytes ⇄ numpy arrays, and the pure pixel conversions around the network. No torch here.

`decode_image` is shared by the API (to vet an upload) and the worker, so an upload the API accepts
is one the worker can read. It returns (H, W, C) with C = 1 (gray), 2 (gray + alpha), 3 (RGB) or
4 (RGBA), dtype uint8 or uint16 (16-bit PNG/TIFF stay 16-bit). Every other mode is converted to one
of those: 1-bit → gray; palette → RGB, or RGBA when it has transparency; CMYK/YCbCr/LAB/HSV → RGB;
32-bit int → uint16 (clipped); float → uint16 (clipped to [0, 1], or to [0, 65535] when above 1).
EXIF orientation is applied; animations give their first frame.

`encode_png` is a small PNG writer (numpy + ISA-L's deflate) rather than Pillow or OpenCV because
neither writes every layout we return (Pillow has no 16-bit RGB, OpenCV no 2-channel), and because it
is much faster: on a 2048x2048 RGB result (`python bench/png.py`), the Up filter deflated by ISA-L
(`isal`, zlib-compatible output) takes 27 ms for 2.39 MB (17 ms on 2 threads) where zlib level 1 with
the Sub filter took 112 ms for 3.10 MB, and OpenCV's libpng level 1 186 ms for 2.80 MB. An upscaled
image is smooth vertically as much as horizontally, and Up costs one subtraction per byte.
With `threads` > 1, large images are cut into horizontal bands deflated in parallel (as pigz does:
each band a raw deflate stream ended by a sync flush, the bands' Adler-32s combined).
"""
from __future__ import annotations

import io
import struct
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from isal import isal_zlib
from PIL import Image, UnidentifiedImageError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EXIF_ORIENTATION = 0x0112
_PNG_COLOR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}  # channels → PNG colour type (gray, gray+alpha, RGB, RGBA)
_ROWS_PER_CHUNK = 256  # rows filtered and deflated at a time, so encoding needs no full-size copy
_MIN_BAND_BYTES = 1 << 20  # bands smaller than this are not worth a thread
_ZLIB_HEADER = b"\x78\x01"  # deflate, 32 KiB window, "fastest" level hint (header % 31 == 0)
_ADLER_BASE = 65521
# PIL-style full-range BT.601, chroma centred on 0 (PIL's +128 offset cancels out). The inverse is
# computed, not the rounded textbook constants, so the Y of a round trip is exactly the Y put in.
RGB_TO_YCC = np.array([[0.299, 0.587, 0.114],
                       [-0.168736, -0.331264, 0.5],
                       [0.5, -0.418688, -0.081312]], dtype=np.float64)
YCC_TO_RGB = np.linalg.inv(RGB_TO_YCC).astype(np.float32)
RGB_TO_YCC = RGB_TO_YCC.astype(np.float32)


class ImageDecodeError(ValueError):
    """The bytes are not a usable image. The message is meant for the person who uploaded it."""


class ImageTooLargeError(ImageDecodeError):
    """The header announces more pixels than allowed; nothing was decoded."""


# ----------------------------------------------------------------------------------------------- decode
def decode_image(data: bytes, max_pixels: int | None = None) -> np.ndarray:
    """Image file bytes → (H, W, C) uint8/uint16 array; raises only `ImageDecodeError` for bad input."""
    data = bytes(data) if isinstance(data, (bytearray, memoryview)) else data
    if not isinstance(data, bytes):
        raise TypeError(f"decode_image takes bytes, not {type(data).__name__}")
    if not data:
        raise ImageDecodeError("the file is empty (0 bytes)")
    try:
        return _decode(data, max_pixels)
    except (ImageDecodeError, MemoryError):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        limit = Image.MAX_IMAGE_PIXELS
        raise ImageTooLargeError(f"the image has more pixels than the decoder allows ({limit:,}); "
                                 "it looks like a decompression bomb") from None
    except UnidentifiedImageError:
        raise ImageDecodeError("the file is not an image in a format we can read "
                               "(JPEG, PNG, WebP, TIFF, BMP or GIF)") from None
    except Exception as exc:  # every decoder failure (truncation, bad CRC, libjpeg errors, ...) is bad input
        raise ImageDecodeError(
            f"the image data is damaged or incomplete ({type(exc).__name__}: {exc})") from None


def _decode(data: bytes, max_pixels: int | None) -> np.ndarray:
    with warnings.catch_warnings():
        # Pillow only warns between 1x and 2x MAX_IMAGE_PIXELS; for an upload that is an error.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(io.BytesIO(data)) as im:
            return _decode_opened(data, im, max_pixels)


def _decode_opened(data: bytes, im: Image.Image, max_pixels: int | None) -> np.ndarray:
    """The decode proper, on an opened image (header read, pixels not yet)."""
    width, height = im.size
    _check_size(width, height, max_pixels)  # from the header: nothing is decoded yet
    # Load before reading EXIF: PNG keeps eXIf after the pixels, and a load error must surface here.
    im.load()
    orientation = _orientation(im)
    if _is_16bit_color(data, im):
        # Pillow truncates 16-bit colour to 8 bits; its decode above still served to catch truncation
        # and bad CRCs reliably, and OpenCV now supplies the 16-bit samples. Pillow opens 16-bit
        # gray+alpha PNG as RGBA, so the PNG header (colour type 4) says which it is.
        gray_alpha = im.mode in ("LA", "La") or (data[:8] == PNG_SIGNATURE and data[25] == 4)
        arr = _decode_16bit_cv2(data, gray_alpha=gray_alpha)
    else:
        arr = _pil_to_array(im)
    if arr.shape[:2] != (height, width):
        raise ImageDecodeError(f"the decoded size {arr.shape[1]}x{arr.shape[0]} does not match "
                               f"the header's {width}x{height}")
    return np.ascontiguousarray(apply_orientation(arr, orientation))


def _check_size(width: int, height: int, max_pixels: int | None) -> None:
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"the image has no pixels ({width}x{height})")
    # Pillow's own bomb check warns (not raises) below 2x; repeat it so a thread that lost the
    # warnings filter (catch_warnings is process-global) still refuses.
    if Image.MAX_IMAGE_PIXELS and width * height > Image.MAX_IMAGE_PIXELS:
        raise ImageTooLargeError(f"the image is {width}x{height}, more pixels than the decoder allows "
                                 f"({Image.MAX_IMAGE_PIXELS:,})")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLargeError(f"the image is {width}x{height} = {width * height / 1e6:.1f} MP, "
                                 f"more than the {max_pixels / 1e6:.1f} MP limit")


def _orientation(im: Image.Image) -> int:
    try:
        value = int(im.getexif().get(EXIF_ORIENTATION, 1))
    except Exception:  # a broken EXIF block should not cost the family their photo
        return 1
    return value if 1 <= value <= 8 else 1


def _is_16bit_color(data: bytes, im: Image.Image) -> bool:
    """16-bit colour (RGB/RGBA/gray+alpha) PNG or TIFF, which Pillow would load as 8-bit."""
    if data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR":
        return data[24] == 16 and data[25] in (2, 4, 6)
    if im.format == "TIFF":
        bits = im.tag_v2.get(258, (8,))
        return max(bits) == 16 and len(bits) >= 2
    return False


def _decode_16bit_cv2(data: bytes, gray_alpha: bool) -> np.ndarray:
    import cv2  # only for 16-bit colour; keeps the common path free of OpenCV

    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)  # ignores EXIF: applied later
    if arr is None:
        raise ImageDecodeError("the 16-bit image data is damaged or incomplete")
    if arr.dtype != np.uint16:
        arr = arr.astype(np.uint16) * 257
    if arr.ndim == 2:
        arr = arr[:, :, None]
    elif arr.shape[2] == 3:
        arr = arr[:, :, ::-1]
    elif arr.shape[2] == 4:
        arr = arr[:, :, [2, 1, 0, 3]]
    if gray_alpha and arr.shape[2] == 4:
        arr = arr[:, :, [0, 3]]  # OpenCV expands 16-bit gray+alpha to BGRA; give it back as gray+alpha
    return arr


def _pil_to_array(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode == "1":
        im = im.convert("L")
    elif mode in ("P", "PA"):
        im = im.convert("RGBA" if mode == "PA" or im.has_transparency_data else "RGB")
    elif mode in ("La",):
        im = im.convert("LA")
    elif mode in ("RGBa",):
        im = im.convert("RGBA")
    elif mode.startswith("I;16"):
        return np.asarray(im).astype(np.uint16)[:, :, None]  # also fixes big-endian "I;16B"
    elif mode == "I":
        return np.clip(np.asarray(im), 0, 65535).astype(np.uint16)[:, :, None]
    elif mode == "F":
        a = np.nan_to_num(np.asarray(im, dtype=np.float32))
        a = a * 65535.0 if a.max(initial=0.0) <= 1.0 else a
        return np.clip(np.rint(a), 0, 65535).astype(np.uint16)[:, :, None]
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        im = im.convert("RGBA" if "A" in mode else "RGB")  # CMYK, YCbCr, LAB, HSV, RGBX, ...
    arr = np.asarray(im, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def apply_orientation(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Undo EXIF orientation 1–8 on an (H, W, C) array (same result as `ImageOps.exif_transpose`)."""
    if orientation == 2:
        return arr[:, ::-1]
    if orientation == 3:
        return arr[::-1, ::-1]
    if orientation == 4:
        return arr[::-1]
    if orientation == 5:
        return arr.transpose(1, 0, 2)
    if orientation == 6:
        return np.rot90(arr, k=-1)
    if orientation == 7:
        return np.rot90(arr, k=-1)[::-1]
    if orientation == 8:
        return np.rot90(arr, k=1)
    return arr


# ----------------------------------------------------------------------------------------------- encode
def encode_png(img: np.ndarray, dpi: tuple[int, int] | None = None, *, compress_level: int = 1,
               threads: int = 1) -> bytes:
    """(H, W[, C]) uint8/uint16 → PNG bytes of the same bit depth and layout, with pHYs when `dpi`.

    `compress_level`: ISA-L's 0-3 (1: fastest with good ratio; 3 is slower and no smaller here).
    `threads`: bands deflated in parallel for large images (the bytes differ, the pixels do not)."""
    img = as_hwc(img)
    if img.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"encode_png takes uint8 or uint16 pixels, not {img.dtype}")
    height, width, channels = img.shape
    if height == 0 or width == 0:
        raise ValueError("encode_png got an empty image")
    depth = img.dtype.itemsize * 8
    header = struct.pack(">IIBBBBB", width, height, depth, _PNG_COLOR_TYPE[channels], 0, 0, 0)
    chunks = [_chunk(b"IHDR", header)]
    if dpi is not None:
        ppm = [round(d / 0.0254) for d in dpi]  # pHYs is in pixels per metre
        chunks.append(_chunk(b"pHYs", struct.pack(">IIB", ppm[0], ppm[1], 1)))
    chunks.append(_chunk(b"IDAT", _zlib_stream(img, compress_level, threads)))
    chunks.append(_chunk(b"IEND", b""))
    return PNG_SIGNATURE + b"".join(chunks)


def _zlib_stream(img: np.ndarray, level: int, threads: int) -> bytes:
    """The IDAT payload: a zlib stream of the Up-filtered rows, deflated band by band."""
    height = img.shape[0]
    bands = max(1, min(threads, img.nbytes // _MIN_BAND_BYTES, height))
    cuts = [height * i // bands for i in range(bands + 1)]
    jobs = [(img, cuts[i], cuts[i + 1], level, i == bands - 1) for i in range(bands)]
    if bands == 1:
        parts = [_deflate_band(*jobs[0])]
    else:  # ISA-L and numpy release the GIL: the bands really run side by side
        with ThreadPoolExecutor(bands - 1) as pool:
            later = [pool.submit(_deflate_band, *job) for job in jobs[1:]]
            parts = [_deflate_band(*jobs[0])] + [f.result() for f in later]
    adler = 1
    for _, band_adler, length in parts:
        adler = _adler32_combine(adler, band_adler, length)
    return _ZLIB_HEADER + b"".join(data for data, _, _ in parts) + struct.pack(">I", adler)


def _deflate_band(img: np.ndarray, top: int, bottom: int, level: int, last: bool) -> tuple[bytes, int, int]:
    """Rows [top, bottom) Up-filtered and raw-deflated (ended by a sync flush unless `last`); returns the
    deflate bytes, the Adler-32 of the filtered bytes and their length."""
    comp = isal_zlib.compressobj(level, isal_zlib.DEFLATED, -15)
    parts, adler, length = [], 1, 0
    big_endian = img.dtype.newbyteorder(">")
    previous = None if top == 0 else np.ascontiguousarray(img[top - 1:top].astype(big_endian, copy=False))
    for start in range(top, bottom, _ROWS_PER_CHUNK):
        # PNG samples are big-endian; swapping block by block keeps 16-bit encoding copy-free.
        block = img[start:min(start + _ROWS_PER_CHUNK, bottom)].astype(big_endian, copy=False)
        block = np.ascontiguousarray(block).reshape(block.shape[0], -1).view(np.uint8)
        # Up filter (type 2): each byte minus the byte above it, mod 256 (the row above the first is 0).
        filtered = np.empty((block.shape[0], block.shape[1] + 1), np.uint8)
        filtered[:, 0] = 2
        if previous is None:
            filtered[0, 1:] = block[0]
        else:
            np.subtract(block[0], previous.reshape(-1).view(np.uint8), out=filtered[0, 1:])
        np.subtract(block[1:], block[:-1], out=filtered[1:, 1:])
        previous = block[-1:]
        parts.append(comp.compress(filtered.data))
        adler = isal_zlib.adler32(filtered.data, adler)
        length += filtered.nbytes
    parts.append(comp.flush(isal_zlib.Z_FINISH if last else isal_zlib.Z_SYNC_FLUSH))
    return b"".join(parts), adler, length


def _adler32_combine(adler1: int, adler2: int, length2: int) -> int:
    """Adler-32 of A + B from those of A and B and B's length (zlib's adler32_combine)."""
    rem = length2 % _ADLER_BASE
    sum1 = adler1 & 0xFFFF
    sum2 = (rem * sum1) % _ADLER_BASE
    sum1 = (sum1 + (adler2 & 0xFFFF) + _ADLER_BASE - 1) % _ADLER_BASE
    sum2 = (sum2 + (adler1 >> 16) + (adler2 >> 16) + _ADLER_BASE - rem) % _ADLER_BASE
    return sum1 | (sum2 << 16)


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


# ----------------------------------------------------------------------------------------------- pixels
def as_hwc(img: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, C) with C in 1–4 → (H, W, C) view."""
    img = np.asarray(img)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"expected (H, W) or (H, W, C) with C in 1-4, got shape {img.shape}")
    return img


def max_value(dtype: np.dtype) -> int:
    """Full-scale value of uint8/uint16 pixels (what 1.0 maps to)."""
    if dtype == np.uint8:
        return 255
    if dtype == np.uint16:
        return 65535
    raise ValueError(f"pixels must be uint8 or uint16, not {dtype}")


def resize_lanczos(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """High-quality (antialiased) Lanczos resize of (H, W, C) uint8/uint16 to `size` = (width, height).

    Each channel goes through Pillow's 32-bit float Lanczos (its 8-bit path is off by a level on flat
    areas, and it has no 16-bit colour mode at all); colour is premultiplied by alpha so transparent
    pixels do not bleed into visible edges.
    """
    img = as_hwc(img)
    full = max_value(img.dtype)
    if (img.shape[1], img.shape[0]) == tuple(size):
        return img.copy()
    channels = img.shape[2]
    color_ch = channels - 1 if channels in (2, 4) else channels
    alpha = _resize_plane(img[:, :, color_ch], size) / full if color_ch < channels else None
    out = np.empty((size[1], size[0], channels), img.dtype)
    for c in range(color_ch):
        if alpha is None:
            plane = _resize_plane(img[:, :, c], size)
        else:
            plane = _resize_plane(img[:, :, c] * (img[:, :, color_ch] / np.float32(full)), size)
            visible = alpha > 0.5 / full  # where alpha rounds to 0 the colour is moot (and 0/0)
            plane = np.divide(plane, np.clip(alpha, 1e-6, None), out=np.zeros_like(plane), where=visible)
        out[:, :, c] = np.clip(np.rint(plane), 0, full)
    if alpha is not None:
        out[:, :, color_ch] = np.clip(np.rint(alpha * full), 0, full)
    return out


def _resize_plane(plane: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    im = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32), "F")
    return np.asarray(im.resize(size, Image.LANCZOS), dtype=np.float32)


def color_transform(a: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(..., H, W, k) float32 → (..., H, W, rows of `matrix`), each pixel multiplied by `matrix`.

    OpenCV's per-pixel transform: ~50x faster than a (k x k) matmul through numpy or torch on CPU.
    """
    import cv2

    a = np.ascontiguousarray(a, dtype=np.float32)
    flat = a.reshape(-1, a.shape[-2], a.shape[-1])
    res = cv2.transform(flat, np.asarray(matrix, np.float32))
    return res.reshape(*a.shape[:-1], matrix.shape[0])


def bicubic_upscale(a: np.ndarray, scale: int) -> np.ndarray:
    """(H, W, C ≤ 4) float32 → (scale·H, scale·W, C) bicubic (a = -0.75, half-pixel centres, edge
    replicate): the same numbers as torch's `interpolate(mode="bicubic", align_corners=False)` in
    ESPCN's residual, to ~1e-6, and ~30x faster on CPU."""
    import cv2

    h, w, c = a.shape
    res = cv2.resize(np.ascontiguousarray(a), (w * scale, h * scale), interpolation=cv2.INTER_CUBIC)
    return res.reshape(h * scale, w * scale, c)


def quantize(a: np.ndarray, full: int) -> np.ndarray:
    """(H, W, C) float [0, 1] → uint8 (full=255) / uint16 (65535), rounded and saturated in one
    OpenCV pass (~6x faster than the numpy chain of multiply, round, clip and cast)."""
    import cv2

    a = np.ascontiguousarray(a, dtype=np.float32)
    depth = cv2.CV_8U if full == 255 else cv2.CV_16U
    return cv2.addWeighted(a, float(full), a, 0.0, 0.0, dtype=depth).reshape(a.shape)
