"""A job's original and result as the pages show them, and the result fitted to a print size.

Both come through the app (never a presigned URL), after the page has checked who may see the job, so
an image tag can only ever show the signed-in partner's own portraits. Fitting uses model/print_size.py
and model/images.py, which need Pillow and numpy, not torch.
"""
from __future__ import annotations

import contextlib

import math
from dataclasses import dataclass

from flask import Response, current_app, stream_with_context

from model.crop import CropError, apply_crop
from model.images import ImageDecodeError, decode_image, resize_lanczos
from model.png import encode_png
from model.print_size import fit_to_print, parse_print_size
from shared.errors import DependencyUnavailable, InvalidRequest, JobNotFound, ResultNotReady
from shared.models import Job, JobStatus
from shared.storage import is_missing_object

PRINT_DPI = 300  # what photo labs ask for
# (slug in URLs, label, size as model/print_size.py parses it)
PRINT_SIZES = (("11x14in", "11 × 14 in", "11x14in"), ("8x10in", "8 × 10 in", "8x10in"),
               ("a4", "A4 (21 × 29.7 cm)", "21x29.7cm"))
FIT_MAX_PIXELS = 40_000_000  # a fitted print is made in this process: bounds its memory (~0.5 GB at most)
SHOWN_AS_IS = {"image/jpeg", "image/png", "image/webp", "image/bmp", "image/gif"}  # browsers show these
CHUNK = 256 * 1024


@dataclass(frozen=True)
class PrintFit:
    slug: str
    label: str
    dpi: int  # the resolution the result prints at when it fills this paper as it is
    fitted: tuple[int, int]  # its pixel size when fitted to this paper at PRINT_DPI
    covers: tuple[float, float]  # inches of the paper the picture covers (fitted, never cropped)
    needed: tuple[int, int]  # the original's size that would give PRINT_DPI without resampling


def print_fits(width: int, height: int, scale: int) -> list[PrintFit]:
    """For a result of width x height: each print size's resolution as is, and the 300-dpi fitting."""
    fits = []
    for slug, label, size in PRINT_SIZES:
        fitted = fit_to_print(width, height, parse_print_size(size), PRINT_DPI)
        factor = fitted[0] / width  # > 1: the result is enlarged further to reach 300 dpi
        needed = (math.ceil(width * factor / scale), math.ceil(height * factor / scale))
        covers = (round(fitted[0] / PRINT_DPI, 1), round(fitted[1] / PRINT_DPI, 1))
        fits.append(PrintFit(slug, label, round(PRINT_DPI / factor), fitted, covers, needed))
    return fits


def _storage():
    return current_app.extensions["portraits"].storage


def _stream(key: str, content_type: str, download_name: str | None = None) -> Response:
    """The object, streamed from S3 in chunks (a 600 MP result never sits in this process whole)."""
    storage = _storage()
    with _storage_errors():
        obj = storage.client.get_object(storage.bucket, key)

    def chunks():
        try:
            yield from obj.stream(CHUNK)
        finally:
            obj.close()
            obj.release_conn()

    response = Response(stream_with_context(chunks()), mimetype=content_type)
    if obj.headers.get("Content-Length"):
        response.headers["Content-Length"] = obj.headers["Content-Length"]
    if download_name:
        response.headers["Content-Disposition"] = f'attachment; filename="{download_name}"'
    return response


def _read(key: str) -> bytes:
    with _storage_errors():
        return _storage().get(key)


@contextlib.contextmanager
def _storage_errors():
    """A missing object is a 404 (erased or expired meanwhile); any other storage failure a 503."""
    try:
        yield
    except Exception as exc:
        if is_missing_object(exc):
            raise JobNotFound("this image is no longer in storage") from None
        raise DependencyUnavailable("object storage is unavailable; try again shortly") from exc


def original(job: Job) -> Response:
    """The upload as sent when a browser can show it; TIFF (which browsers cannot) as PNG. For a job with
    a crop, only that region (as PNG), so that before and after show the same thing."""
    if job.input_content_type in SHOWN_AS_IS and job.crop_box is None:
        return _stream(job.input_key, job.input_content_type)
    try:
        pixels = decode_image(_read(job.input_key), max_pixels=current_app.extensions["portraits"].settings
                              .max_input_pixels)
        pixels = apply_crop(pixels, job.crop_box)  # in the pixels as shown: decode_image applied EXIF
    except (ImageDecodeError, CropError):
        raise JobNotFound("the original can no longer be shown") from None
    return Response(encode_png(pixels), mimetype="image/png")


def _check_result(job: Job) -> None:
    if job.status is not JobStatus.SUCCEEDED or not job.result_key:
        raise ResultNotReady(f"job {job.id} has no result: it is {job.status.value}", status=job.status.value)


def result(job: Job, download: bool) -> Response:
    _check_result(job)
    return _stream(job.result_key, "image/png", f"portrait-{job.id}.png" if download else None)


def fitted(job: Job, slug: str) -> Response:
    """The result resized (Lanczos) to fill `slug`'s paper at 300 dpi, with the DPI in the PNG."""
    _check_result(job)
    size = next((s for s in PRINT_SIZES if s[0] == slug), None)
    if size is None:
        raise InvalidRequest(f"print size must be one of {[s[0] for s in PRINT_SIZES]}", field="size")
    box = fit_to_print(job.output_width, job.output_height, parse_print_size(size[2]), PRINT_DPI)
    if max(job.output_width * job.output_height, box[0] * box[1]) > FIT_MAX_PIXELS:
        raise InvalidRequest("this result is too large to fit here; download it and use "
                             "`python -m model upscale --print-size`", field="size")
    pixels = decode_image(_read(job.result_key))
    data = encode_png(resize_lanczos(pixels, box), dpi=(PRINT_DPI, PRINT_DPI))
    response = Response(data, mimetype="image/png")
    response.headers["Content-Disposition"] = (f'attachment; filename="portrait-{job.id}-{slug}-'
                                               f'{PRINT_DPI}dpi.png"')
    return response
