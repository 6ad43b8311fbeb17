"""Image bytes ⇄ numpy arrays, and the pure pixel conversions around the network. No torch here.

`decode_image` is shared by the API (to vet an upload) and the worker, so an upload the API accepts
is one the worker can read. It returns (H, W, C) with C = 1 (gray), 2 (gray + alpha), 3 (RGB) or
4 (RGBA), dtype uint8 or uint16 (16-bit PNG/TIFF stay 16-bit). Every other mode is converted to one
of those: 1-bit → gray; palette → RGB, or RGBA when it has transparency; CMYK/YCbCr/LAB/HSV → RGB;
32-bit int → uint16 (clipped); float → uint16 (clipped to [0, 1], or to [0, 65535] when above 1).
EXIF orientation is applied; animations give their first frame.

The other way, arrays → PNG bytes, is model/png.py.
"""
from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EXIF_ORIENTATION = 0x0112
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
