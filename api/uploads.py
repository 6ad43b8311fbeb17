"""Checks an upload before anything is stored: a real image, in an accepted format, within limits, that
the worker's decoder can read. Any bytes at all get either an `Upload` or a 4xx, never a 500.

Cheapest first:
1. probe: Pillow reads the header only, and only with the decoders of the accepted formats
   (ALLOWED_FORMATS), so no other Pillow plugin ever parses the bytes. From the header alone: the
   format, width x height against MAX_INPUT_PIXELS, the 4x result against MAX_OUTPUT_PIXELS, and the
   animation policy (ANIMATED_IMAGES). A 100000x100000 header or a decompression bomb costs nothing.
2. decode: `model.images.decode_image`, the worker's own decoder (no torch), with the same pixel limit,
   so an upload the API accepts is one the worker can read.

Refusals are `InvalidImage` (422) with field "image", a message naming the problem, and a
machine-readable `reason`: unsupported_format, unreadable, too_many_pixels, result_too_large,
animated, damaged. A missing or empty file is `InvalidUpload` (400); a body over MAX_UPLOAD_BYTES
never gets here (Werkzeug answers 413). Pillow's decompression-bomb warning is an error here.

With a crop (POST /v1/jobs `crop`, model/crop.py) MAX_OUTPUT_PIXELS applies to the crop's result, not
the whole photo's (checked before decoding), and the crop must lie inside the photo as decoded, i.e.
after its EXIF orientation; refusals are `InvalidCrop` (422) with field "crop" and reason empty,
outside_image or result_too_large.

`read_photo` (POST /v1/faces) upscales nothing, so no result limit applies there, and it hands back the
decoded pixels. It decodes in a throwaway child process (worker/decode_guard.py, the workers' guard,
DECODE_TIMEOUT_SECONDS): a decoder that crashes or hangs on a crafted file costs that child, never the
gunicorn worker, and is refused as "damaged". `read_upload` still decodes in this process, as before;
bench/faces_api.py measures what the child costs (15-40 ms up to 2000 px).
"""
from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from werkzeug.datastructures import FileStorage

from model.crop import Crop, CropError, check_crop
from model.images import ImageDecodeError, ImageTooLargeError, decode_image
from shared.errors import InvalidCrop, InvalidImage, InvalidUpload
from shared.settings import Settings
from worker.decode_guard import decode_isolated  # the workers' decoder guard; imports no Celery

MIME_BY_FORMAT = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "BMP": "image/bmp",
                  "TIFF": "image/tiff", "GIF": "image/gif"}
DISPLAY_NAME = {"JPEG": "JPEG", "PNG": "PNG", "WEBP": "WebP", "BMP": "BMP", "TIFF": "TIFF", "GIF": "GIF"}
# Pillow names a JPEG with a Multi-Picture (MPF) block, common from phones, MPO; it is a JPEG whose first
# picture is the photo (the others are previews or depth maps), not an animation.
PILLOW_ALIASES = {"MPO": "JPEG"}
DEFAULT_SCALE = 4


@dataclass(frozen=True)
class Upload:
    data: bytes
    content_type: str
    width: int
    height: int


def read_upload(file: FileStorage | None, settings: Settings, crop: Crop | None = None) -> Upload:
    """The upload of a job, checked; with `crop`, the crop is checked against the photo too."""
    upload, _ = _read(file, settings, crop=crop, upscaled=True)
    return upload


def read_photo(file: FileStorage | None, settings: Settings) -> tuple[Upload, np.ndarray]:
    """A photo to look at, not upscale (POST /v1/faces): every check but the result size; and its pixels,
    as decode_image gives them (EXIF orientation applied), decoded in a child process."""
    return _read(file, settings, crop=None, upscaled=False, isolated=True)


# What read_photo's child runs: decode_image (tests put a decoder that crashes here; module-level, so
# the child can import it by name).
PHOTO_DECODER = decode_image


def _read(file: FileStorage | None, settings: Settings, crop: Crop | None, upscaled: bool,
          isolated: bool = False) -> tuple[Upload, np.ndarray]:
    if file is None:
        raise InvalidUpload("the request has no file in the multipart field 'image'",
                            field="image")
    data = file.read()
    if not data:
        raise InvalidUpload("the uploaded file 'image' is empty", field="image")
    with warnings.catch_warnings():
        # A bomb warning (Pillow only warns between 1x and 2x its own limit) refuses the upload; Pillow's
        # advisory UserWarnings about odd metadata never do, whatever the process's warning filters say.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        warnings.simplefilter("ignore", UserWarning)
        fmt = _probe(data, settings, whole_result=upscaled and crop is None)
        if crop is not None:
            _check_crop_result(crop, settings)  # from the crop alone: before anything is decoded
        try:
            if isolated:
                pixels = decode_isolated(data, max_pixels=settings.max_input_pixels,
                                         timeout=settings.decode_timeout_seconds,
                                         formats=allowed_formats(settings), decode=PHOTO_DECODER)
            else:
                pixels = decode_image(data, max_pixels=settings.max_input_pixels)
        except ImageTooLargeError as exc:
            raise _refuse("too_many_pixels", f"the image is too large: {exc}") from None
        except ImageDecodeError as exc:
            raise _refuse("damaged", f"the upload is not a usable image: {exc}") from None
        except MemoryError:
            raise _refuse("too_many_pixels", "the image needs more memory to decode than is available; "
                                             "send a smaller image") from None
    height, width = pixels.shape[:2]
    if crop is not None:
        try:
            check_crop(crop, (width, height))  # the size as decoded: after EXIF orientation, as shown
        except CropError as exc:
            raise InvalidCrop(str(exc), field="crop", reason=exc.reason) from None
    return Upload(data=data, content_type=MIME_BY_FORMAT[fmt], width=width, height=height), pixels


def _check_crop_result(crop: Crop, settings: Settings) -> None:
    """MAX_OUTPUT_PIXELS for a crop: its result, not the whole photo's, is what gets made."""
    scale = model_scale(settings.model_weights)
    out_w, out_h = crop.width * scale, crop.height * scale
    if crop.width > 0 and crop.height > 0 and out_w * out_h > settings.max_output_pixels:
        raise InvalidCrop(f"the crop {crop} is {crop.width}x{crop.height}; its {scale}x result would be "
                          f"{out_w}x{out_h} = {out_w * out_h / 1e6:.1f} MP, more than the "
                          f"{settings.max_output_pixels / 1e6:.1f} MP limit (MAX_OUTPUT_PIXELS)",
                          field="crop", reason="result_too_large", limit=settings.max_output_pixels)


# ------------------------------------------------------------------------------------------------ probe
def allowed_formats(settings: Settings) -> list[str]:
    """ALLOWED_FORMATS as Pillow format names, in the configured order."""
    names = [name.strip().upper() for name in settings.allowed_formats.split(",") if name.strip()]
    return list(dict.fromkeys(names))


def _probe(data: bytes, settings: Settings, whole_result: bool = True) -> str:
    """Header checks, nothing decoded; returns the (accepted) format. `whole_result`: the whole photo
    will be upscaled, so its result must fit MAX_OUTPUT_PIXELS."""
    allowed = allowed_formats(settings)
    try:
        with Image.open(io.BytesIO(data), formats=allowed) as im:
            fmt = PILLOW_ALIASES.get(im.format or "", im.format or "")
            width, height = im.size
            animated = fmt != "JPEG" and settings.animated_images == "reject" and _is_animated(im)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        limit, name = _pixel_limit(settings)
        raise _refuse("too_many_pixels", f"the image declares far more pixels than the {limit / 1e6:.1f} MP "
                                         f"limit ({name}), like a decompression bomb; nothing was decoded "
                                         f"({exc})", limit=limit) from None
    except InvalidImage:
        raise
    except Exception as exc:  # UnidentifiedImageError, or a header the plugin chokes on (any type)
        raise _unreadable(data, allowed, exc) from None
    if fmt not in allowed:  # cannot happen with `formats=`; kept so a Pillow alias never slips through
        raise _unsupported(DISPLAY_NAME.get(fmt, fmt), allowed)

    pixels = width * height
    limit, name = _pixel_limit(settings)
    if width <= 0 or height <= 0:
        raise _refuse("unreadable", f"the image header declares no pixels ({width}x{height})")
    if pixels > limit:
        raise _refuse("too_many_pixels",
                      f"the image is {width}x{height} = {pixels / 1e6:.1f} MP, more than the "
                      f"{limit / 1e6:.1f} MP limit ({name}); nothing was decoded", limit=limit)
    scale = model_scale(settings.model_weights)
    out_w, out_h = width * scale, height * scale
    if whole_result and out_w * out_h > settings.max_output_pixels:
        raise _refuse("result_too_large",
                      f"the image is {width}x{height}; its {scale}x result would be {out_w}x{out_h} = "
                      f"{out_w * out_h / 1e6:.1f} MP, more than the {settings.max_output_pixels / 1e6:.1f} "
                      f"MP limit (MAX_OUTPUT_PIXELS)", limit=settings.max_output_pixels)
    if animated:
        raise _refuse("animated", f"the image is an animated or multi-frame {DISPLAY_NAME[fmt]}; only still "
                                  "images are accepted (ANIMATED_IMAGES=reject)")
    return fmt


def _pixel_limit(settings: Settings) -> tuple[int, str]:
    """The input pixel limit that applies, and its name: MAX_INPUT_PIXELS, or Pillow's bomb limit if lower
    (the decoder would refuse more anyway)."""
    pillow = Image.MAX_IMAGE_PIXELS
    if pillow and pillow < settings.max_input_pixels:
        return int(pillow), "the decoder's decompression-bomb limit"
    return settings.max_input_pixels, "MAX_INPUT_PIXELS"


def _is_animated(im: Image.Image) -> bool:
    try:
        return bool(getattr(im, "is_animated", False))
    except Exception:  # finding the second frame failed: the frame table is broken
        raise _refuse("damaged", f"the {DISPLAY_NAME.get(im.format or '', im.format)} image's frame table "
                                 "is damaged") from None


@lru_cache(maxsize=8)
def model_scale(weights: Path) -> int:
    """The upscale factor from the configured weights' model card (the API imports no torch)."""
    try:
        scale = int(json.loads(weights.with_suffix(".json").read_text())["scale"])
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_SCALE
    return scale if scale >= 1 else DEFAULT_SCALE


# ----------------------------------------------------------------------------------------- refusals
def _refuse(reason: str, message: str, **details) -> InvalidImage:
    return InvalidImage(message, field="image", reason=reason, **details)


def _unsupported(kind: str, allowed: list[str]) -> InvalidImage:
    return _refuse("unsupported_format", f"the file is {kind}, which is not an accepted image format "
                                         f"(accepted: {_names(allowed)})", accepted=_names(allowed))


def _unreadable(data: bytes, allowed: list[str], exc: Exception) -> InvalidImage:
    """Pillow could not read the header: say what the file looks like, from its first bytes."""
    kind = sniff(data)
    if kind in allowed:
        detail = str(exc)[:200] if not isinstance(exc, UnidentifiedImageError) else ""
        return _refuse("unreadable", f"the image looks like {DISPLAY_NAME[kind]} but its header is damaged "
                                     f"or incomplete and cannot be read" + (f" ({detail})" if detail else ""))
    if kind is not None:
        label = f"a {DISPLAY_NAME[kind]} image" if kind in DISPLAY_NAME else kind
        return _unsupported(label, allowed)
    return _refuse("unreadable", f"the file is not an image in an accepted format (accepted: "
                                 f"{_names(allowed)})", accepted=_names(allowed))


def _names(allowed: list[str]) -> str:
    return ", ".join(DISPLAY_NAME.get(name, name) for name in allowed)


def sniff(data: bytes) -> str | None:
    """What the first bytes say the file is: a Pillow format name for image formats we know, a short
    description for other common files, None when nothing matches. For messages only: never a reason
    to accept anything."""
    head = data[:64]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head[:2] == b"BM" and len(head) >= 18 and int.from_bytes(head[14:18], "little") in (
            12, 16, 40, 52, 56, 64, 108, 124):
        return "BMP"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    for magic, label in _OTHER_MAGIC:
        if head.startswith(magic):
            return label
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"):
            return "a HEIC/HEIF image"
        if brand in (b"avif", b"avis"):
            return "an AVIF image"
        return "a video (MP4/QuickTime)"
    text = data[:1024].lstrip().lower()
    if text.startswith((b"<?xml", b"<svg", b"<!doctype svg")) and b"<svg" in data[:4096].lower():
        return "an SVG drawing (vector images are not accepted)"
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<script")):
        return "an HTML page"
    if text.startswith(b"<?xml"):
        return "an XML document"
    if head and all(32 <= b < 127 or b in b"\t\r\n" for b in data[:512]):
        return "text"
    return None


_OTHER_MAGIC = [
    (b"%PDF", "a PDF document"), (b"%!PS", "a PostScript document"), (b"PK\x03\x04", "a ZIP archive"),
    (b"PK\x05\x06", "a ZIP archive"), (b"\x1f\x8b", "a gzip archive"), (b"Rar!\x1a\x07", "a RAR archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"), (b"\x7fELF", "an executable (ELF)"),
    (b"MZ", "an executable (Windows)"), (b"8BPS", "a Photoshop document"),
    (b"\x00\x00\x01\x00", "an icon (ICO)"), (b"\xff\x4f\xff\x51", "a JPEG 2000 image"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "a JPEG 2000 image"), (b"qoif", "a QOI image"),
    (b"DDS ", "a DDS texture"), (b"\x00\x00\x00\x0cJXL ", "a JPEG XL image"),
    (b"\xff\x0a", "a JPEG XL image"),
]
