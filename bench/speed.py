"""CPU speed of the shipped upscaler's backends vs the OpenCV peer, plus the PSNR cost of each path.

    python bench/speed.py                 # MP/s at 128², 512², 1024² RGB in (4x out), 2 threads
    python bench/speed.py --psnr 100      # + val Y-PSNR of every path vs torch fp32 on 100 val faces
    python bench/speed.py --rss           # + peak RSS of a 3000x4000 RGB photo (in a subprocess)
    python bench/speed.py --vs model/weights/espcn_x4.pt   # + another model's default, same run

Every row is end to end, like the peer: uint8 RGB in → uint8 RGB 4x out, through `Upscaler.upscale`
(tiling, colour conversion, quantization) with only the network's execution swapped. MP/s counts
output pixels. Rows run interleaved, round after round, and each reports its median, so a busy
neighbour slows every row alike. See bench/README.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.variants import KINDS, service_kind, torch_default, variant  # noqa: E402
from model.devices import cpu_flags  # noqa: E402
from model.espcn import ESPCN, ESPCNConfig  # noqa: E402
from model.upscaler import DEFAULT_WEIGHTS, Upscaler  # noqa: E402

DATA = Path(os.environ.get("PORTRAIT_DATA_DIR", REPO.parent / "shared" / "data"))
PEER = DATA / "peers" / "ESPCN_x4.pb"
PEER_ROW = "OpenCV dnn_superres ESPCN_x4 (peer)"  # its row's label, which the ratios divide by


def load_shipped(weights: Path | None, tile: int, precision: str | None = "fp32") -> tuple[Upscaler, str]:
    """The shipped net (or random weights of its architecture when the file is absent)."""
    path = weights or DEFAULT_WEIGHTS
    if path.is_file():
        up = Upscaler.from_weights(path, device="cpu", tile=tile, precision=precision)
        return up, f"{up.name} {up.version} ({path.name})"
    import yaml

    config = REPO / "model" / "configs" / f"{path.stem}.yaml"  # the architecture the file would have had
    if not config.is_file():
        config = REPO / "model" / "configs" / f"{DEFAULT_WEIGHTS.stem}.yaml"
    cfg = yaml.safe_load(config.read_text())
    torch.manual_seed(0)
    net = ESPCN(ESPCNConfig.from_dict(cfg["model"])).eval()
    up = Upscaler(net, name=cfg["name"], color=cfg["color"], device="cpu", tile=tile, precision=precision)
    return up, f"RANDOM weights with the {cfg['name']} architecture ({path} is absent)"


def cpu_header() -> str:
    """The CPU by name, and the flags that decide the fast paths."""
    name = platform.processor() or platform.machine()
    try:
        name = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    flags = cpu_flags()
    has = {f: ("yes" if f in flags else "no") for f in ("avx512_bf16", "amx_bf16", "amx_int8", "avx512_vnni")}
    return (f"CPU: {name}, {os.cpu_count()} logical cores; " + ", ".join(f"{k} {v}" for k, v in has.items()))


def versions() -> str:
    try:
        import openvino

        ov = f"OpenVINO {openvino.__version__.split('-')[0]}"
    except ImportError:
        ov = "no OpenVINO"
    return f"torch {torch.__version__}, {ov}, OpenCV {cv2.__version__}"


# ------------------------------------------------------------------------------------------- timing
def peer_and_bicubic() -> dict:
    rows = {"cv2 bicubic (INTER_CUBIC)":
            lambda rgb: cv2.resize(rgb, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)}
    if PEER.is_file():
        sr = cv2.dnn_superres.DnnSuperResImpl_create()
        sr.readModel(str(PEER))
        sr.setModel("espcn", 4)
        rows[PEER_ROW] = lambda rgb: sr.upsample(rgb[:, :, ::-1].copy())
    return rows


def build_rows(base: Upscaler, kinds: dict[str, str], others: list[Path] = ()) -> dict:
    rows = {}
    for label, kind in kinds.items():
        try:
            rows[label + (" (default)" if kind == service_kind(base) else "")] = variant(base, kind).upscale
        except Exception as exc:  # an optional backend missing is a row we say we skipped, not a crash
            print(f"skipped {label}: {type(exc).__name__}: {exc}", file=sys.stderr)
    for path in others:  # --vs: another model's service default, and its int8 float path (as shipped before)
        other, _ = load_shipped(path, base.tile, precision=None)
        rows[f"{other.name} {other.version}: its default ({service_kind(other)})"] = other.upscale
        try:
            rows[f"{other.name} {other.version}: int8, float path (as shipped before)"] = variant(
                other, "int8_ovfloat").upscale
        except Exception as exc:
            print(f"skipped {other.name} int8 float path: {type(exc).__name__}: {exc}", file=sys.stderr)
    return rows | peer_and_bicubic()


def time_rows(rows: dict, sizes: list[int], runs: int) -> dict:
    """{(row, size): output MP/s}: per size, one warm-up round, then the median of `runs` rounds with
    the rows interleaved. Sizes run one after the other: OpenCV's dnn re-plans its net on every change
    of input size (3.3 vs 8.5 MP/s for the peer at 128² vs 512² when sizes alternated)."""
    rng = np.random.default_rng(0)
    mps = {}
    for n in sizes:
        img = rng.integers(0, 256, (n, n, 3), dtype=np.uint8)
        times = {name: [] for name in rows}
        for round_ in range(runs + 1):
            for name, fn in rows.items():
                start = time.perf_counter()
                fn(img)
                if round_:  # round 0 warms up: primitive creation, compile, session init
                    times[name].append(time.perf_counter() - start)
        mps |= {(name, n): n * n * 16 / 1e6 / float(np.median(t)) for name, t in times.items()}
    return mps


def speed_table(base: Upscaler, args) -> str:
    rows = build_rows(base, selected_kinds(args), args.vs)
    mps = time_rows(rows, args.sizes, args.runs)
    peer = PEER_ROW if PEER_ROW in rows else None  # absent without ../shared/data/peers
    ours = next((k for k in rows if "(default)" in k), None)
    torch_row = next((k for k in rows if k.startswith(torch_default())), None)
    head = " | ".join(f"{n}² → {4 * n}²: MP/s (x peer, x torch)" for n in args.sizes)
    lines = [f"| method | {head} |", "|---|" + "---:|" * len(args.sizes)]
    for name in rows:
        cells = []
        for n in args.sizes:
            v = mps[name, n]
            x_peer = f"{v / mps[peer, n]:.2f}" if peer else "–"
            x_torch = f"{v / mps[torch_row, n]:.2f}" if torch_row else "–"
            cells.append(f"{v:.1f} ({x_peer}, {x_torch})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    note = (f"\nx peer: / OpenCV ESPCN_x4 in the same run; x torch: / '{torch_default()}' (what runs "
            f"when openvino is absent). Service default here: {ours or service_kind(base)}.")
    return "\n".join(lines) + note


def net_table(base: Upscaler, args) -> str:
    """Milliseconds per crop for the net alone (each row's executor, no tiling or colour work)."""
    crops = sorted({min(n, args.tile + 2 * base.margin) for n in args.sizes})
    bodies = {}
    for label, kind in selected_kinds(args).items():
        try:
            up = variant(base, kind)
            # What an 8-bit photo runs: the 8-bit RGB graph where the variant has one (model/rgb8.py).
            bodies[label] = (up._body(up.precision, rgb8=True), True) if up.rgb8 else (up._float_body(), False)
        except Exception as exc:
            print(f"skipped {label}: {type(exc).__name__}: {exc}", file=sys.stderr)
    rng = np.random.default_rng(0)
    xs = {c: (rng.random((1, c, c, base.config.channels), dtype=np.float32),
              rng.integers(0, 256, (1, c, c, 3), dtype=np.uint8)) for c in crops}
    times = {(label, c): [] for label in bodies for c in crops}
    for round_ in range(2 * args.runs + 1):
        for c, x in xs.items():
            for label, (body, rgb8) in bodies.items():
                start = time.perf_counter()
                body(x[1] if rgb8 else x[0])
                if round_:
                    times[label, c].append(time.perf_counter() - start)
    head = " | ".join(f"{c}² crop: ms median (min)" for c in crops)
    lines = [f"| net only, one crop | {head} |", "|---|" + "---:|" * len(crops)]
    for label in bodies:
        cells = [f"{1e3 * np.median(times[label, c]):.1f} ({1e3 * min(times[label, c]):.1f})" for c in crops]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def selected_kinds(args) -> dict[str, str]:
    """Row label → variant kind, minus the optional rows the flags leave out."""
    skip = set()
    if args.no_compile:
        skip |= {"fp32_compile", "bf16_compile"}
    if args.no_ort:
        skip.add("fp32_ort")
    if args.no_prepacked:
        skip |= {"fp32_prepacked", "bf16_prepacked"}
    return {label: kind for label, kind in KINDS.items() if kind not in skip}


# ------------------------------------------------------------------------------------------- quality
def psnr_table(base: Upscaler, limit: int, args) -> str:
    from model import evaluate as E
    from model import metrics as M

    try:
        hrs = E.val_hrs(limit)
    except FileNotFoundError as exc:
        return f"({exc}; PSNR cost not measured)"
    sets = {p: [E.to_uint8(lr) for lr in lrs] for p, lrs in E.make_eval_set(hrs, args.protocols).items()}
    cols = " | ".join(f"{p}: dB (Δ)" for p in args.protocols)
    lines = [f"| path ({len(hrs)} val faces) | {cols} | max \\|Δ\\| 8-bit levels |",
             "|---|" + "---:|" * (len(args.protocols) + 1)]
    ref_out = ref_psnr = None
    for label, kind in {"torch fp32, float path (reference)": "fp32_float", **selected_kinds(args)}.items():
        label += " (default)" if kind == service_kind(base) else ""
        if kind in ("fp32_compile", "bf16_compile") and ref_out is not None:
            continue  # the reference row once; compile equals its eager twin (bench/README.md)
        try:
            up = variant(base, kind)
        except Exception as exc:  # an optional backend missing: said once, in the speed table's log
            print(f"skipped {label}: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        try:
            outs = {p: [up.upscale(lr) for lr in lrs] for p, lrs in sets.items()}
        except Exception as exc:  # report the path as broken rather than lose the other rows
            lines.append(f"| {label} | failed: {type(exc).__name__}: {exc} |")
            continue
        psnr = {p: float(np.mean([M.y_psnr(o, h) for o, h in zip(outs[p], hrs)])) for p in sets}
        if ref_out is None:
            ref_out, ref_psnr = outs, psnr
        diff = max(int(np.abs(o.astype(int) - r.astype(int)).max())
                   for p in sets for o, r in zip(outs[p], ref_out[p]))
        cells = " | ".join(f"{psnr[p]:.4f} ({psnr[p] - ref_psnr[p]:+.4f})" for p in sets)
        lines.append(f"| {label} | {cells} | {diff} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- RSS
RSS_CHILD = """
import sys, time, numpy as np, torch
sys.path.insert(0, {repo!r})
torch.set_num_threads({threads})
from bench.speed import load_shipped, peak_rss_mib
weights = {weights!r}
up, desc = load_shipped(weights and __import__("pathlib").Path(weights), {tile}, precision=None)
img = np.random.default_rng(0).integers(0, 256, (3000, 4000, 3), dtype=np.uint8)
before = peak_rss_mib()
start = time.perf_counter()
out = up.upscale(img)
took = time.perf_counter() - start
assert out.shape == (12000, 16000, 3)
print(f"3000x4000 RGB → 12000x16000 ({{up.backend}} {{up.precision}}, tile {tile}, {threads} threads): "
      f"{{took:.1f}} s, peak RSS {{peak_rss_mib():.0f}} MiB (before upscale {{before:.0f}} MiB; "
      f"output array {{out.nbytes / 2**20:.0f}} MiB) — {{desc}}")
"""


def peak_rss_mib() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: on Linux a child's ru_maxrss starts at the
    RSS its parent had when it forked (this bench's parent holds ~1.4 GB after --psnr)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_report(args) -> str:
    """Peak RSS in a fresh process, so nothing this process allocated counts."""
    code = RSS_CHILD.format(repo=str(REPO), threads=args.threads, tile=args.tile,
                            weights=str(args.weights) if args.weights else None)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    return res.stdout.strip() or res.stderr.strip()[-2000:]


def macs_per_lr_pixel(config: ESPCNConfig) -> int:
    """Multiply-adds per input pixel: what bounds the speed of a net this small on a CPU. Every conv is
    stride 1 with same padding, so each weight is one multiply-add per LR pixel (residual blocks included)."""
    return sum(m.weight.numel() for m in ESPCN(config).modules() if isinstance(m, torch.nn.Conv2d))


def int_list(text: str) -> list[int]:
    """A comma-separated option's integers: "128,512" → [128, 512]."""
    return [int(v) for v in text.split(",")]


def add_run_args(p: argparse.ArgumentParser, runs: int, sizes: tuple[int, ...] = (128, 512, 1024)) -> None:
    """The options every CPU speed bench shares (this one, bench/ceiling.py and bench/batch.py)."""
    p.add_argument("--weights", type=Path, default=None, help="default: model/weights/espcn_rb_x4.pt")
    p.add_argument("--sizes", type=int_list, default=list(sizes),
                   help=f"input edges, comma-separated (default {','.join(map(str, sizes))})")
    p.add_argument("--tile", type=int, default=512, help="Upscaler tile (default 512, the service's)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=runs, help=f"timed rounds after one warm-up (default {runs})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(p, runs=7)
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    p.add_argument("--no-ort", action="store_true", help="skip the onnxruntime row")
    p.add_argument("--no-prepacked", action="store_true", help="skip the private-oneDNN torch rows")
    p.add_argument("--psnr", type=int, default=0, metavar="N", help="also measure PSNR cost on N val faces")
    p.add_argument("--protocols", type=lambda s: tuple(s.split(",")), default=("pyramid",),
                   help="LR protocols for --psnr (default pyramid; all: pyramid,area,area_jpeg60,"
                        "bicubic_blur_noise)")
    p.add_argument("--net", action="store_true", help="also time the net alone per crop (2x --runs rounds)")
    p.add_argument("--rss", action="store_true", help="also measure peak RSS on a 3000x4000 photo")
    p.add_argument("--vs", type=Path, action="append", default=[], metavar="WEIGHTS",
                   help="also time another model's default path in the same run (e.g. model/weights/espcn_x4.pt)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    base, desc = load_shipped(args.weights, args.tile, precision=None)  # the service's default path
    print(f"{cpu_header()}\n{versions()}; {args.threads} thread(s), tile {args.tile}, load avg "
          f"{os.getloadavg()[0]:.2f}\nnet: {desc}, {macs_per_lr_pixel(base.config) / 1e3:.1f}k MAC per LR "
          f"pixel (peer ESPCN_x4: 24.6k, on Y)\n")
    print(speed_table(base, args))
    if args.net:
        print("\n" + net_table(base, args))
    if args.psnr:
        print("\n" + psnr_table(base, args.psnr, args))
    if args.rss:
        print("\n" + rss_report(args))
    print(f"\nload avg at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
