"""Command line: `python -m model upscale|train|evaluate ...`.

    python -m model upscale IN [IN ...] --out DIR [--device auto|cpu|cuda] [--tile N] [--weights P]
                                        [--precision fp32|bf16|fp16|int8] [--print-size 11x14in] [--dpi 300]
                                        [--crop x,y,w,h | --face N [--aspect 11x14|8x10|3:4]] [--quality]

IN are image files or folders (their images, not recursive); each result is `DIR/<stem>.png`. A file
that fails prints one `error:` line and the others go on; the exit code is 1 if any failed. `train`
and `evaluate` hand their arguments to `model.train.main` / `model.evaluate.main`.

`--crop x,y,w,h` upscales that region only (pixels of the photo as shown, after EXIF orientation; the
result is exactly 4x the crop). `--face N` finds the faces (model/faces.py), numbers them left to right
from 1, prints them, and upscales the N-th with its head-and-shoulders crop at `--aspect`; a photo with
fewer than N faces is an error for that file. These are the crops POST /v1/faces suggests.
`--quality` averages the net over the photo and its mirror image (model/ensemble.py): ~2x the time.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from model.faces import DEFAULT_ASPECT, PRINT_ASPECTS  # numpy only: the detector loads on first use

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif"}
DEFAULT_DPI = 300


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m model", description="4x face super-resolution.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{upscale,train,evaluate}")
    up = sub.add_parser("upscale", help="upscale image files or folders 4x into PNGs")
    up.add_argument("inputs", nargs="+", type=Path, metavar="IN", help="image files or folders")
    up.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder for <stem>.png results")
    up.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    up.add_argument("--tile", type=int, default=512, help="input tile edge in pixels (default 512)")
    up.add_argument("--weights", type=Path, default=None, help="state_dict .pt with its .json card")
    up.add_argument("--precision", choices=("fp32", "bf16", "fp16", "int8"), default=None,
                    help="network precision (default: int8 on CPU when the weights' quantized model is there "
                         "and OpenVINO is installed; else bf16 on GPUs and bf16-capable CPUs, else fp32)")
    up.add_argument("--quality", action="store_true",
                    help="average the net over the photo and its mirror image (model/ensemble.py): ~2x slower, "
                         "a little sharper, nothing invented")
    up.add_argument("--print-size", default=None, metavar="WxH(in|cm)",
                    help="fit the 4x result to this print (e.g. 11x14in), turned to the photo's orientation")
    up.add_argument("--dpi", type=int, default=None, help=f"print resolution (default {DEFAULT_DPI}), "
                                                         "also written into the PNG")
    region = up.add_mutually_exclusive_group()
    region.add_argument("--crop", default=None, metavar="x,y,w,h",
                        help="upscale only this region (pixels after EXIF orientation)")
    region.add_argument("--face", type=int, default=None, metavar="N",
                        help="upscale the N-th face (1 = leftmost) with its head-and-shoulders crop")
    up.add_argument("--aspect", default=None, choices=list(PRINT_ASPECTS),
                    help=f"print aspect (width:height) of the --face crop (default {DEFAULT_ASPECT})")
    # train/evaluate own their options: everything after the command is passed through untouched.
    sub.add_parser("train", add_help=False, help="train a model (model.train)")
    sub.add_parser("evaluate", add_help=False, help="evaluate models on val (model.evaluate)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command in ("train", "evaluate"):
        # Imported only now: they pull in training-only code, and the upscale path does not need it.
        return importlib.import_module(f"model.{args.command}").main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        return upscale_command(args, parser)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def upscale_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from model.print_size import fit_to_print, parse_print_size

    print_in = None
    if args.print_size:
        try:
            print_in = parse_print_size(args.print_size)
        except ValueError as exc:
            parser.error(str(exc))
    if args.dpi is not None and args.dpi <= 0:
        parser.error("--dpi must be positive")
    crop = None
    if args.crop is not None:
        from model.crop import parse_crop

        try:
            crop = parse_crop(args.crop)
        except ValueError as exc:
            parser.error(f"--crop: {exc}")
    if args.face is not None and args.face < 1:
        parser.error("--face counts from 1 (the leftmost face)")
    if args.aspect and args.face is None:
        parser.error("--aspect goes with --face")
    dpi = args.dpi or (DEFAULT_DPI if print_in else None)
    files, failed = collect_inputs(args.inputs)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        upscaler = load_upscaler(args)
    except Exception as exc:  # missing weights, bad card, no CUDA, unwritable folder: say it, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2

    from tqdm import tqdm

    from model.crop import CropError, apply_crop
    from model.ensemble import upscale_ensemble
    from model.images import ImageDecodeError, decode_image, resize_lanczos
    from model.png import encode_png

    written: dict[str, Path] = {}
    bar = tqdm(files, desc=f"upscale ({upscaler.device}, {upscaler.backend} {upscaler.precision})", unit="img", file=sys.stderr)
    for path in bar:
        bar.set_postfix_str(path.name)
        target = args.out / f"{path.stem}.png"
        try:
            if target.name in written:
                raise ValueError(f"would overwrite {target} written for {written[target.name]}")
            pixels = decode_image(path.read_bytes())
            if args.face is not None:
                pixels = apply_crop(pixels, face_crop(pixels, args.face, args.aspect or DEFAULT_ASPECT, path))
            else:
                pixels = apply_crop(pixels, crop)
            out = upscale_ensemble(upscaler, pixels) if args.quality else upscaler.upscale(pixels)
            if print_in:
                size = fit_to_print(out.shape[1], out.shape[0], print_in, dpi)
                out = resize_lanczos(out, size)
            _write_atomic(target, encode_png(out, dpi=(dpi, dpi) if dpi else None))
            written[target.name] = path
        except KeyboardInterrupt:
            raise
        except ImageDecodeError as exc:
            tqdm.write(f"error: {path}: not a usable image: {exc}", file=sys.stderr)
            failed += 1
        except (CropError, NoSuchFace) as exc:
            tqdm.write(f"error: {path}: {exc}", file=sys.stderr)
            failed += 1
        except Exception as exc:  # one bad file must not stop the batch; report it and go on
            tqdm.write(f"error: {path}: {type(exc).__name__}: {exc}", file=sys.stderr)
            failed += 1
    bar.close()
    print(f"{len(written)} written to {args.out}, {failed} failed", file=sys.stderr)
    return 1 if failed else 0


class NoSuchFace(Exception):
    """`--face N` on a photo with fewer than N faces."""


def face_crop(pixels, n: int, aspect: str, path: Path) -> tuple[int, int, int, int]:
    """The N-th face's (1 = leftmost) portrait crop; the faces found are listed on stderr."""
    from tqdm import tqdm

    from model.faces import find_portraits

    found = find_portraits(pixels, aspect)
    for i, (face, crop) in enumerate(found, 1):
        tqdm.write(f"{path}: face {i}: box {face.x},{face.y},{face.width},{face.height} "
                   f"confidence {face.confidence:.3f}, {aspect} crop {','.join(map(str, crop))}"
                   + ("  <- upscaled" if i == n else ""), file=sys.stderr)
    if n > len(found):
        faces = f"{len(found) or 'no'} face{'s' if len(found) != 1 else ''}"
        numbered = f" (1 to {len(found)}, left to right)" if found else ""
        raise NoSuchFace(f"--face {n}: the detector finds {faces} in the photo{numbered}")
    return found[n - 1][1]


def collect_inputs(inputs: list[Path]) -> tuple[list[Path], int]:
    """Files as given, folders expanded to their images (sorted); missing paths count as failures."""
    files, missing = [], 0
    for item in inputs:
        if item.is_dir():
            files += sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif item.is_file():
            files.append(item)
        else:
            print(f"error: {item}: no such file or folder", file=sys.stderr)
            missing += 1
    return files, missing


def load_upscaler(args: argparse.Namespace):
    from model.upscaler import Upscaler

    return Upscaler.from_weights(args.weights, device=args.device, tile=args.tile, precision=args.precision)


def _write_atomic(target: Path, data: bytes) -> None:
    """Write beside the target then rename, so an interrupted run never leaves a half PNG."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
