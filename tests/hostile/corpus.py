"""A deterministic corpus of hostile, broken and awkward uploads, generated in memory (seeded).

Each `Case` says what the service must do with it:
- "accept": 202, and the job's input size is `size` (width, height after EXIF orientation);
- "reject": a 4xx (`status`, default 422) whose JSON error has `reason` when one is given;
- "either": damaged data a decoder may legitimately read (a bit flip inside compressed pixels, a cut
  after the last pixel): a 4xx, or a 202 whose job then succeeds at 4x the size the API reported.
Nothing may get a 5xx. Accepted images are at most 64 px a side, so a CPU worker upscales them fast.

Run `python -m tests.hostile.corpus` for a summary by category.
"""
from __future__ import annotations

import io
import struct
import zlib
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from model.png import encode_png
from tests.imagegen import synthetic_portrait

SEED = 20261124
W, H = 48, 32  # the base portrait: non-square, so a wrong EXIF rotation shows in the size
# Sizes the hostile worker's decoder misbehaves on (tests/hostile/decoders.py); no other case has them.
ABORT_SIZE, HANG_SIZE = (13, 3), (11, 3)


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    filename: str
    expect: str  # "accept" | "reject" | "either"
    size: tuple[int, int] | None = None  # accept: (width, height) of the decoded, EXIF-rotated input
    reason: str | None = None  # reject: the error's machine-readable reason, when it is certain
    status: int = 422  # reject: the HTTP status
    worker: str = "succeeded"  # accept/either: how the job must end ("failed" for the marker sizes)
    worker_error: str | None = None  # the job's error_code when worker == "failed"

    @property
    def category(self) -> str:
        return self.name.split("/", 1)[0]


# ------------------------------------------------------------------------------------------ encoders
def base(seed: int = 0, w: int = W, h: int = H) -> np.ndarray:
    side = max(w, h)
    return np.ascontiguousarray(synthetic_portrait(side, seed=seed)[:h, :w])


def pil(im: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def rgb(seed: int = 0, w: int = W, h: int = H) -> Image.Image:
    return Image.fromarray(base(seed, w, h))


def chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_raw(width: int, height: int, idat: bytes, *, depth: int = 8, color: int = 0,
            before_idat: bytes = b"") -> bytes:
    """A PNG with valid CRCs around whatever IHDR and IDAT we like."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + before_idat + chunk(b"IDAT", idat)
            + chunk(b"IEND", b""))


def png_bomb(side: int) -> bytes:
    """A real, valid 8-bit gray PNG of side x side black pixels: ~1000:1 compressed."""
    comp = zlib.compressobj(9)
    row = b"\0" * (side + 1)  # filter byte + pixels
    block = row * max(1, (1 << 22) // len(row))
    rows_per_block = len(block) // len(row)
    parts, left = [], side
    while left:
        n = min(left, rows_per_block)
        parts.append(comp.compress(block[:n * len(row)]))
        left -= n
    parts.append(comp.flush())
    return png_raw(side, side, b"".join(parts))


def with_png_chunk(png: bytes, kind: bytes, payload: bytes) -> bytes:
    """Insert a chunk right after IHDR."""
    return png[:33] + chunk(kind, payload) + png[33:]


def tiff_raw(width: int, height: int, *, strip: bytes | None = None, strip_offset: int | None = None,
             strip_bytes: int | None = None, next_ifd: int | None = 0, bits: int = 8,
             endian: str = "<") -> bytes:
    """An 8-bit gray TIFF, one strip, with every field open to abuse."""
    strip = b"\x80" * min(width * height, 4096) if strip is None else strip
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, bits), (259, 3, 1, 1),
               (262, 3, 1, 1), (273, 4, 1, 0), (277, 3, 1, 1), (278, 4, 1, height),
               (279, 4, 1, len(strip) if strip_bytes is None else strip_bytes)]
    ifd_size = 2 + 12 * len(entries) + 4
    data_offset = 8 + ifd_size
    magic = b"II*\x00" if endian == "<" else b"MM\x00*"
    out = bytearray(magic + struct.pack(endian + "I", 8) + struct.pack(endian + "H", len(entries)))
    for tag, typ, count, value in entries:
        if tag == 273:
            value = data_offset if strip_offset is None else strip_offset
        packed = struct.pack(endian + "HHI", tag, typ, count)
        packed += struct.pack(endian + "HH", value, 0) if typ == 3 else struct.pack(endian + "I", value)
        out += packed
    out += struct.pack(endian + "I", 8 if next_ifd is None else next_ifd)  # None: the IFD points at itself
    return bytes(out + strip)


def bmp_with_size(bmp: bytes, width: int, height: int) -> bytes:
    return bmp[:18] + struct.pack("<ii", width, height) + bmp[26:]


def jpeg_with_size(jpeg: bytes, width: int, height: int) -> bytes:
    """Rewrite the SOF0/SOF2 frame header's dimensions; the scan data stays tiny."""
    for sof in (b"\xff\xc0", b"\xff\xc2"):
        at = jpeg.find(sof)
        if at > 0:
            return jpeg[:at + 5] + struct.pack(">HH", height, width) + jpeg[at + 9:]
    raise ValueError("no SOF marker")


def webp_with_size(webp: bytes, width: int, height: int) -> bytes:
    """Rewrite a lossy (VP8) WebP's frame size (14 bits each, so at most 16383)."""
    at = webp.find(b"\x9d\x01\x2a")
    return webp[:at + 3] + struct.pack("<HH", width & 0x3FFF, height & 0x3FFF) + webp[at + 7:]


def exif_jpeg(orientation: int, seed: int = 0) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return pil(rgb(seed), "JPEG", quality=90, exif=exif.tobytes())


def rotated(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    return (size[1], size[0]) if orientation in (5, 6, 7, 8) else size


def flip_bit(data: bytes, offset: int, bit: int) -> bytes:
    out = bytearray(data)
    out[offset] ^= 1 << bit
    return bytes(out)


def cut_offsets(data: bytes, fractions) -> list[int]:
    return sorted({max(1, min(len(data) - 1, int(len(data) * f))) for f in fractions})


# ------------------------------------------------------------------------------------------ the corpus
@lru_cache(maxsize=1)
def build() -> tuple[Case, ...]:
    rng = np.random.default_rng(SEED)
    cases: list[Case] = []

    def accept(name, data, filename, size, **kw):
        cases.append(Case(name, data, filename, "accept", size=size, **kw))

    def reject(name, data, filename, reason=None, status=422):
        cases.append(Case(name, data, filename, "reject", reason=reason, status=status))

    def either(name, data, filename):
        cases.append(Case(name, data, filename, "either"))

    im = rgb()
    size = (W, H)
    a = base()

    # --- valid files in every accepted format, mode and bit depth ------------------------------
    good = {
        "png-rgb": (pil(im, "PNG"), "png"),
        "png-rgba": (pil(im.convert("RGBA"), "PNG"), "png"),
        "png-gray": (pil(im.convert("L"), "PNG"), "png"),
        "png-la": (pil(im.convert("LA"), "PNG"), "png"),
        "png-palette": (pil(im.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"), "png"),
        "png-palette-transparency": (pil(im.convert("P", palette=Image.Palette.ADAPTIVE), "PNG",
                                         transparency=0), "png"),
        "png-palette-4bit": (pil(im.convert("P", palette=Image.Palette.ADAPTIVE, colors=16), "PNG",
                                 bits=4), "png"),
        "png-1bit": (pil(im.convert("1"), "PNG"), "png"),
        "png-16bit-gray": (pil(Image.fromarray(a[..., 0].astype(np.uint16) * 257), "PNG"), "png"),
        "png-16bit-rgb": (encode_png(a.astype(np.uint16) * 257), "png"),
        "png-16bit-rgba": (encode_png(np.dstack([a, a[..., :1]]).astype(np.uint16) * 257), "png"),
        "png-16bit-gray-alpha": (encode_png(a[..., :2].astype(np.uint16) * 257), "png"),
        "png-huge-text-chunk": (with_png_chunk(pil(im, "PNG"), b"tEXt", b"Comment\0" + b"x" * 500_000),
                                "png"),
        "png-many-text-chunks": (pil(im, "PNG", pnginfo=_many_text(2000)), "png"),
        "jpeg-baseline": (pil(im, "JPEG", quality=90), "jpg"),
        "jpeg-progressive": (pil(im, "JPEG", quality=90, progressive=True), "jpg"),
        "jpeg-gray": (pil(im.convert("L"), "JPEG"), "jpg"),
        "jpeg-cmyk": (pil(im.convert("CMYK"), "JPEG", quality=95), "jpg"),
        "jpeg-444": (pil(im, "JPEG", subsampling=0, quality=95), "jpg"),
        "jpeg-optimized": (pil(im, "JPEG", optimize=True), "jpg"),
        "jpeg-mpo-two-pictures": (pil(im, "MPO", save_all=True, append_images=[rgb(1)]), "jpg"),
        "jpeg-with-icc": (pil(im, "JPEG", icc_profile=b"\0" * 2000), "jpg"),
        "jpeg-huge-comment": (pil(im, "JPEG", comment=b"c" * 60_000), "jpg"),
        "webp-lossy": (pil(im, "WEBP", quality=80), "webp"),
        "webp-lossless": (pil(im, "WEBP", lossless=True), "webp"),
        "webp-alpha": (pil(im.convert("RGBA"), "WEBP", lossless=True), "webp"),
        "bmp-24bit": (pil(im, "BMP"), "bmp"),
        "bmp-32bit": (pil(im.convert("RGBA"), "BMP"), "bmp"),
        "bmp-8bit-palette": (pil(im.convert("P", palette=Image.Palette.ADAPTIVE), "BMP"), "bmp"),
        "bmp-gray": (pil(im.convert("L"), "BMP"), "bmp"),
        "bmp-1bit": (pil(im.convert("1"), "BMP"), "bmp"),
        "bmp-top-down": (_top_down_bmp(pil(im, "BMP")), "bmp"),
        "tiff-raw": (pil(im, "TIFF"), "tif"),
        "tiff-lzw": (pil(im, "TIFF", compression="tiff_lzw"), "tif"),
        "tiff-deflate": (pil(im, "TIFF", compression="tiff_adobe_deflate"), "tif"),
        "tiff-packbits": (pil(im, "TIFF", compression="packbits"), "tif"),
        "tiff-jpeg": (pil(im, "TIFF", compression="jpeg"), "tif"),
        "tiff-cmyk": (pil(im.convert("CMYK"), "TIFF"), "tif"),
        "tiff-1bit-group4": (pil(im.convert("1"), "TIFF", compression="group4"), "tif"),
        "tiff-16bit-gray": (pil(Image.fromarray(a[..., 0].astype(np.uint16) * 257), "TIFF"), "tif"),
        "tiff-16bit-rgb": (_tiff16_rgb(a), "tif"),
        "tiff-float": (pil(Image.fromarray(a[..., 0].astype(np.float32) / 255), "TIFF"), "tif"),
        "tiff-big-endian-gray": (tiff_raw(W, H, strip=bytes(range(256)) * (W * H // 256), endian=">"), "tif"),
        "tiff-ifd-points-at-itself": (tiff_raw(W, H, strip=bytes(W * H), next_ifd=None), "tif"),
    }
    for name, (data, ext) in good.items():
        accept(f"valid/{name}", data, f"portrait.{ext}", size)

    # --- EXIF orientation: all 8 on JPEG, and on PNG, WebP and TIFF -----------------------------
    for orientation in range(1, 9):
        accept(f"exif/jpeg-orientation-{orientation}", exif_jpeg(orientation), "rotated.jpg",
               rotated(size, orientation))
    exif6 = Image.Exif()
    exif6[0x0112] = 6
    accept("exif/png-orientation-6", pil(im, "PNG", exif=exif6.tobytes()), "rotated.png", rotated(size, 6))
    exif8 = Image.Exif()
    exif8[0x0112] = 8
    accept("exif/webp-orientation-8", pil(im, "WEBP", exif=exif8.tobytes()), "rotated.webp", rotated(size, 8))
    accept("exif/tiff-orientation-6", pil(im, "TIFF", tiffinfo={274: 6}), "rotated.tif", rotated(size, 6))
    broken_exif = Image.Exif()
    broken_exif[0x0112] = 99  # out of range: ignored
    accept("exif/jpeg-orientation-99", pil(im, "JPEG", exif=broken_exif.tobytes()), "odd.jpg", size)
    accept("exif/jpeg-garbage-exif", _jpeg_with_app1(pil(im, "JPEG"), b"Exif\0\0" + rng.bytes(300)),
           "odd.jpg", size)

    # --- animations: the first frame is used (ANIMATED_IMAGES=first_frame) ---------------------
    frames = [rgb(1), rgb(2)]
    accept("animated/apng", pil(im, "PNG", save_all=True, append_images=frames, duration=100), "anim.png",
           size)
    accept("animated/webp", pil(im, "WEBP", save_all=True, append_images=frames, duration=100), "anim.webp",
           size)
    accept("animated/tiff-multipage", pil(im, "TIFF", save_all=True, append_images=frames), "pages.tif", size)
    gif_frames = [f.convert("P") for f in frames]
    reject("animated/gif", pil(im.convert("P"), "GIF", save_all=True, duration=100, append_images=gif_frames),
           "anim.gif", "unsupported_format")

    # --- right content, wrong name or declared type ----------------------------------------------
    png, jpeg = good["png-rgb"][0], good["jpeg-baseline"][0]
    for name, data, filename in [
            ("png-named-jpg", png, "photo.jpg"), ("jpeg-named-png", jpeg, "photo.png"),
            ("webp-named-gif", good["webp-lossy"][0], "photo.gif"),
            ("tiff-named-txt", good["tiff-lzw"][0], "notes.txt"),
            ("bmp-no-extension", good["bmp-24bit"][0], "photo"), ("png-named-exe", png, "setup.exe"),
            ("jpeg-path-traversal-name", jpeg, "../../../../etc/passwd"),
            ("png-html-name", png, "<script>.png"),
            ("jpeg-long-name", jpeg, "a" * 900 + ".jpg"), ("png-unicode-name", png, "grand-mère 👵.png"),
            ("png-named-svg", png, "drawing.svg"), ("jpeg-named-pdf", jpeg, "scan.pdf")]:
        accept(f"mislabelled/{name}", data, filename, size)

    # --- not images, or not accepted formats --------------------------------------------------------
    reject("empty/zero-bytes", b"", "empty.png", status=400)
    for name, data, reason in [
            ("one-byte", b"\x89", "unreadable"),
            ("text", b"In loving memory of our grandmother.\n" * 20, "unsupported_format"),
            ("html", b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>",
             "unsupported_format"),
            ("svg", b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10000" '
                    b'height="10000"><rect width="100%" height="100%"/></svg>', "unsupported_format"),
            ("svg-billion-laughs", b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                                   b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><svg>&lol2;</svg>',
             "unsupported_format"),
            ("json", b'{"image": "portrait.png"}', "unsupported_format"),
            ("pdf", b"%PDF-1.7\n1 0 obj<<>>endobj\n" + rng.bytes(500), "unsupported_format"),
            ("postscript", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "unsupported_format"),
            ("zip", _zip(), "unsupported_format"),
            ("gzip", b"\x1f\x8b\x08\x00" + rng.bytes(200), "unsupported_format"),
            ("elf", b"\x7fELF\x02\x01\x01\x00" + rng.bytes(600), "unsupported_format"),
            ("windows-exe", b"MZ\x90\x00" + rng.bytes(600), "unsupported_format"),
            ("gif-still", pil(im.convert("P"), "GIF"), "unsupported_format"),
            ("heic-header", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + rng.bytes(300),
             "unsupported_format"),
            ("avif-header", b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + rng.bytes(300),
             "unsupported_format"),
            ("jpeg2000", pil(im, "JPEG2000"), "unsupported_format"),
            ("psd-header", b"8BPS\x00\x01" + b"\0" * 6 + rng.bytes(200), "unsupported_format"),
            ("ico", pil(im, "ICO"), "unsupported_format"),
            ("pcx", pil(im, "PCX"), "unreadable"),
            ("tga", pil(im, "TGA"), "unreadable"),
            ("ppm", pil(im, "PPM"), "unreadable"),
            ("qoi", pil(im, "QOI") if "QOI" in Image.SAVE else b"qoif" + rng.bytes(100),
             "unsupported_format"),
            ("random-bytes", rng.bytes(5000), "unreadable"),
            ("all-zeros", bytes(4096), "unreadable"),
            ("all-ff", b"\xff" * 4096, "unreadable")]:
        reject(f"not-an-image/{name}", data, f"upload-{name}.png", reason)
    for name, data, reason in [
            ("png-signature-only", b"\x89PNG\r\n\x1a\n", "unreadable"),
            ("jpeg-soi-only", b"\xff\xd8\xff", "unreadable"),
            ("webp-riff-only", b"RIFF\x10\x00\x00\x00WEBPVP8 ", "unreadable"),
            ("tiff-header-only", b"II*\x00\x08\x00\x00\x00", "unreadable"),
            ("bmp-header-only", pil(im, "BMP")[:54], "damaged")]:  # a readable header, no pixels
        reject(f"header-only/{name}", data, "header.bin", reason)

    # --- truncated at many offsets: before the end of the pixels → refused; in the tail → either ----
    truncatable = {"png": png, "jpeg": jpeg, "jpeg-progressive": good["jpeg-progressive"][0],
                   "png-16bit": good["png-16bit-rgb"][0], "webp-lossy": good["webp-lossy"][0],
                   "webp-lossless": good["webp-lossless"][0], "tiff": good["tiff-raw"][0],
                   "tiff-lzw": good["tiff-lzw"][0], "bmp": good["bmp-24bit"][0]}
    for name, data in truncatable.items():
        pixels_end = _pixels_end(name, data)
        offsets = sorted({1, 2, 4, 8, 12, 16, 24, 33, 40, 64, 100, *cut_offsets(data, (0.25, 0.5, 0.75, 0.9))}
                         | {pixels_end - 1, len(data) - 1})
        for offset in offsets:
            if offset >= len(data) or offset < 1:
                continue
            cut = data[:offset]
            if offset < pixels_end:
                reject(f"truncated/{name}@{offset}", cut, f"cut.{name.split('-')[0]}")
            else:
                either(f"truncated/{name}@{offset}", cut, f"cut.{name.split('-')[0]}")

    # --- bit flips at seeded offsets ----------------------------------------------------------------
    flippable = {"png": png, "jpeg": jpeg, "webp-lossy": good["webp-lossy"][0], "tiff": good["tiff-lzw"][0],
                 "bmp": good["bmp-24bit"][0], "png-16bit": good["png-16bit-rgb"][0]}
    for name, data in flippable.items():
        offsets = sorted({int(o) for o in rng.integers(0, len(data), 10)})
        for offset in offsets:
            bit = int(rng.integers(0, 8))
            flipped = flip_bit(data, offset, bit)
            if name.startswith("png") and offset < 33:  # signature or IHDR: the IHDR CRC catches it
                reject(f"bit-flipped/{name}@{offset}.{bit}", flipped, f"flip.{name[:3]}")
            else:
                either(f"bit-flipped/{name}@{offset}.{bit}", flipped, f"flip.{name[:4]}")
    for offset in (0, 1, 2, 3, 8, 12, 16, 20, 29):  # PNG signature, IHDR length/type/fields/CRC
        reject(f"bit-flipped/png-header@{offset}.0", flip_bit(png, offset, 0), "flip.png")

    # --- huge declared dimensions, tiny payload -----------------------------------------------------
    tiny_idat = zlib.compress(b"\0" * 64)
    for name, (w, h) in {"100000x100000": (100_000, 100_000), "65535x65535": (65535, 65535),
                         "10000x10000": (10_000, 10_000),  # 100 MP: Pillow only *warns* at this size
                         "7000x7000": (7000, 7000), "6400x6400": (6400, 6400),  # just over 40 MP
                         "1x40000001": (1, 40_000_001), "2147483647x1": (2**31 - 1, 1)}.items():
        reject(f"huge-dimensions/png-{name}", png_raw(w, h, tiny_idat), "huge.png")
    reject("huge-dimensions/png-0x0", png_raw(0, 0, tiny_idat), "zero.png")
    reject("huge-dimensions/png-50000x1-no-data", png_raw(50_000, 1, tiny_idat), "wide.png")
    reject("huge-dimensions/png-4294967295x4294967295", png_raw(2**32 - 1, 2**32 - 1, tiny_idat), "huge.png")
    for w, h in [(65535, 65535), (8000, 6000), (65535, 1)]:
        reject(f"huge-dimensions/jpeg-{w}x{h}", jpeg_with_size(jpeg, w, h), "huge.jpg")
    for w, h in [(100_000, 100_000), (8000, 6000), (2**31 - 1, 1), (W, -(2**31))]:
        reject(f"huge-dimensions/bmp-{w}x{h}", bmp_with_size(good["bmp-24bit"][0], w, h), "huge.bmp")
    for w, h in [(100_000, 100_000), (8000, 6000), (2**32 - 1, 2**32 - 1)]:
        reject(f"huge-dimensions/tiff-{w}x{h}", tiff_raw(w, h), "huge.tif")
    for w, h in [(16383, 16383), (7000, 7000)]:
        reject(f"huge-dimensions/webp-{w}x{h}", webp_with_size(good["webp-lossy"][0], w, h), "huge.webp")

    # --- decompression bombs: real, valid, highly compressible files over the limit -----------------
    for side in (6400, 8000, 12_000):  # 41, 64 and 144 MP of black in ~41-140 KB
        reject(f"bomb/png-{side}x{side}", png_bomb(side), "bomb.png", "too_many_pixels")
    text_bomb = zlib.compress(b"\0" * 50_000_000, 9)  # 50 MB of text or colour profile in ~50 KB
    reject("bomb/png-ztxt-chunk", with_png_chunk(png, b"zTXt", b"k\0\0" + text_bomb), "bomb.png")
    reject("bomb/png-iccp-chunk", with_png_chunk(png, b"iCCP", b"p\0\0" + text_bomb), "bomb.png")

    # --- structurally broken -------------------------------------------------------------------------
    reject("broken/png-bad-bit-depth", png_raw(W, H, tiny_idat, depth=3), "bad.png")
    reject("broken/png-bad-color-type", png_raw(W, H, tiny_idat, color=5), "bad.png")
    reject("broken/png-idat-not-zlib", png_raw(W, H, rng.bytes(200)), "bad.png")
    reject("broken/png-too-little-data", png_raw(W, H, zlib.compress(b"\0" * 10)), "bad.png")
    reject("broken/png-idat-before-ihdr", b"\x89PNG\r\n\x1a\n" + chunk(b"IDAT", tiny_idat)
           + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 0, 0, 0, 0)) + chunk(b"IEND", b""), "bad.png")
    either("broken/png-unknown-critical-chunk", with_png_chunk(png, b"ABCD", b"1234"), "odd.png")
    either("broken/png-no-iend", png[:-12], "odd.png")
    reject("broken/tiff-strip-beyond-eof", tiff_raw(W, H, strip=b"", strip_offset=10**9, strip_bytes=W * H),
           "bad.tif")
    reject("broken/tiff-strip-count-huge", tiff_raw(W, H, strip=bytes(100), strip_bytes=2**31), "bad.tif")
    reject("broken/tiff-bits-per-sample-0", tiff_raw(W, H, bits=0), "bad.tif")
    reject("broken/tiff-ifd-offset-beyond-eof", b"II*\x00" + struct.pack("<I", 10**8) + bytes(64), "bad.tif")
    reject("broken/bmp-bits-7", good["bmp-24bit"][0][:28] + struct.pack("<H", 7) + good["bmp-24bit"][0][30:],
           "bad.bmp")
    reject("broken/bmp-palette-count-huge", good["bmp-8bit-palette"][0][:46] + struct.pack("<I", 2**31)
           + good["bmp-8bit-palette"][0][50:], "bad.bmp")
    reject("broken/bmp-rle8-garbage", good["bmp-8bit-palette"][0][:30] + struct.pack("<I", 1)
           + good["bmp-8bit-palette"][0][34:54] + rng.bytes(3000), "bad.bmp")
    reject("broken/jpeg-no-scan", jpeg[:jpeg.find(b"\xff\xda")] + b"\xff\xd9", "bad.jpg")
    reject("broken/jpeg-12bit-precision", jpeg.replace(b"\xff\xc0\x00\x11\x08", b"\xff\xc0\x00\x11\x0c", 1),
           "bad.jpg")
    reject("broken/jpeg-zero-components", _jpeg_sof_components(jpeg, 0), "bad.jpg")
    reject("broken/webp-vp8-garbage", good["webp-lossy"][0][:30] + rng.bytes(400), "bad.webp")

    # --- polyglots: an accepted image with something else attached -----------------------------------
    zip_bytes = _zip()
    accept("polyglot/png-plus-zip", png + zip_bytes, "poly.png", size)
    accept("polyglot/png-plus-html", png + b"<html><script>alert(1)</script></html>", "poly.png", size)
    accept("polyglot/jpeg-plus-garbage", jpeg + rng.bytes(3000), "poly.jpg", size)
    accept("polyglot/jpeg-plus-pdf", jpeg + b"%PDF-1.4\n" + rng.bytes(300), "poly.jpg", size)
    accept("polyglot/jpeg-html-in-comment", pil(im, "JPEG", comment=b"<script>alert(1)</script>"), "poly.jpg",
           size)
    accept("polyglot/bmp-plus-zip", good["bmp-24bit"][0] + zip_bytes, "poly.bmp", size)
    accept("polyglot/webp-plus-zip", good["webp-lossy"][0] + zip_bytes, "poly.webp", size)
    reject("polyglot/gif-plus-zip", good_gif(im) + zip_bytes, "poly.gif", "unsupported_format")
    reject("polyglot/html-then-png", b"<html>" + png, "poly.png", "unsupported_format")
    reject("polyglot/zip-then-png", zip_bytes + png, "poly.png", "unsupported_format")

    # --- valid files the worker's test decoder crashes or hangs on (see tests/hostile/decoders.py) -----
    accept("worker/decoder-aborts", pil(rgb(3, *ABORT_SIZE), "PNG"), "abort.png", ABORT_SIZE,
           worker="failed", worker_error="decoder_crashed")
    accept("worker/decoder-hangs", pil(rgb(4, *HANG_SIZE), "PNG"), "hang.png", HANG_SIZE,
           worker="failed", worker_error="decoder_timed_out")

    names = [c.name for c in cases]
    assert len(names) == len(set(names)), [n for n, k in Counter(names).items() if k > 1]
    return tuple(cases)


# ------------------------------------------------------------------------------------------ helpers
def good_gif(im: Image.Image) -> bytes:
    return pil(im.convert("P"), "GIF")


def _many_text(n: int):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for i in range(n):
        info.add_text(f"k{i}", "v")
    return info


def _zip() -> bytes:
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("payload.html", "<script>alert(1)</script>")
    return buf.getvalue()


def _top_down_bmp(bmp: bytes) -> bytes:
    """The same 24-bit BMP stored top-down (negative height), rows reversed."""
    offset = struct.unpack("<I", bmp[10:14])[0]
    width, height = struct.unpack("<ii", bmp[18:26])
    stride = (width * 3 + 3) & ~3
    rows = [bmp[offset + i * stride: offset + (i + 1) * stride] for i in range(height)]
    return bmp[:22] + struct.pack("<i", -height) + bmp[26:offset] + b"".join(reversed(rows))


def _tiff16_rgb(a: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".tiff", (a[..., ::-1].astype(np.uint16) * 257))
    assert ok
    return buf.tobytes()


def _jpeg_with_app1(jpeg: bytes, payload: bytes) -> bytes:
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def _jpeg_sof_components(jpeg: bytes, n: int) -> bytes:
    at = jpeg.find(b"\xff\xc0")
    return jpeg[:at + 9] + bytes([n]) + jpeg[at + 10:]


def _pixels_end(name: str, data: bytes) -> int:
    """Offset just past the last byte a decoder needs for the pixels: a cut before it loses pixels."""
    if name.startswith("png"):
        at, end = 8, 8
        while at < len(data):
            length, kind = struct.unpack(">I4s", data[at:at + 8])
            if kind == b"IDAT":
                # The deflate data, less its last 16 bytes: once the last row is out, Pillow reads
                # neither zlib's Adler-32 nor the final block's end code nor the chunk CRC.
                end = at + 8 + length - 16
            at += 12 + length
        return end
    if name.startswith("jpeg"):
        return data.rfind(b"\xff\xd9")  # up to the last scan; EOI itself is optional to libjpeg
    if name.startswith("webp"):
        return len(data)  # libwebp checks the RIFF size: any cut is detected
    if name.startswith("tiff"):
        return len(data)  # Pillow writes the strips, then the IFD: any cut loses one or the other
    if name.startswith("bmp"):
        return len(data)
    raise ValueError(name)


def summary() -> str:
    cases = build()
    by = Counter((c.category, c.expect) for c in cases)
    lines = [f"{len(cases)} cases"] + [f"  {cat:16} {exp:7} {n}" for (cat, exp), n in sorted(by.items())]
    return "\n".join(lines)


if __name__ == "__main__":
    print(summary())
