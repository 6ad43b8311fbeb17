"""CPU speed of the shipped upscaler vs the OpenCV peer, plus the PSNR cost of each fast path.

    python bench/speed.py                 # MP/s table (512x512 RGB in, 2048x2048 out), 2 threads
    python bench/speed.py --psnr 100      # + val Y-PSNR of every path vs fp32 on 100 val faces
    python bench/speed.py --rss           # + peak RSS of a 3000x4000 RGB photo (in a subprocess)

Every row is end to end, like the peer: uint8 RGB in → uint8 RGB 4x out, through `Upscaler.upscale`
(tiling, colour conversion, quantization) with only the network's execution swapped. MP/s counts
output pixels. Rows run interleaved, round after round, and each reports its median, so a busy
neighbour on a shared CPU slows every row alike. See bench/README.md.
"""
from __future__ import annotations

import argparse
import copy
import io
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model.espcn import ESPCN, ESPCNConfig  # noqa: E402
from model.upscaler import DEFAULT_WEIGHTS, Upscaler, shuffle_nhwc  # noqa: E402

DATA = Path(os.environ.get("PORTRAIT_DATA_DIR", REPO.parent / "shared" / "data"))
PEER = DATA / "peers" / "ESPCN_x4.pb"


# ------------------------------------------------------------------------------------------ the nets
def load_shipped(weights: Path | None, tile: int, precision: str | None = "fp32") -> tuple[Upscaler, str]:
    """The shipped net (or random weights of its architecture when the file is absent)."""
    path = weights or DEFAULT_WEIGHTS
    if path.is_file():
        up = Upscaler.from_weights(path, device="cpu", tile=tile, precision=precision)
        return up, f"{up.name} {up.version} ({path.name})"
    import yaml

    cfg = yaml.safe_load((REPO / "model" / "configs" / "espcn_x4.yaml").read_text())
    torch.manual_seed(0)
    net = ESPCN(ESPCNConfig.from_dict(cfg["model"])).eval()
    up = Upscaler(net, name=cfg["name"], color=cfg["color"], device="cpu", tile=tile, precision=precision)
    return up, f"RANDOM weights with the {cfg['name']} architecture ({path} is absent)"


def variant(base: Upscaler, kind: str) -> Upscaler:
    """A copy of `base` whose network runs one way; everything around it is the shipped code."""
    from model.upscaler import _Body

    up = Upscaler.__new__(Upscaler)
    up.__dict__.update(base.__dict__)
    fp32, scale = base._fp32, base.scale
    if kind == "fp32_cl":
        up._fast, up.precision = fp32, "fp32"
    elif kind == "bf16_cl":
        up._fast, up.precision = _Body(_net_of(base), torch.device("cpu"), torch.bfloat16), "bf16"
    elif kind == "fp32_eager":
        module = copy.deepcopy(fp32.module).to(memory_format=torch.contiguous_format)
        up._fast = _Plain(module, scale, module, channels_last=False)
    elif kind == "fp32_ort":
        up._fast = _Plain(fp32.module, scale, _ort_runner(fp32.module), channels_last=False)
    elif kind in ("fp32_compile", "bf16_compile"):
        import torch._inductor.config as inductor

        inductor.freezing = True  # constant-folds weights and lets oneDNN prepack them
        src = fp32 if kind == "fp32_compile" else variant(base, "bf16_cl")._fast
        # dynamic=False: inductor's dynamic-shape build of this graph failed a stride assert on new
        # sizes (torch 2.13); static shapes recompile per crop size instead.
        up._fast = _Plain(src.module, scale, torch.compile(src.module, dynamic=False), channels_last=True)
        up.precision = "bf16" if kind == "bf16_compile" else "fp32"
    else:
        raise ValueError(kind)
    return up


def _net_of(up: Upscaler) -> ESPCN:
    net = ESPCN(up.config)
    net.body.load_state_dict(up._fp32.module.state_dict())
    return net.eval()


class _Plain:
    """Same contract as `_Body` (float32 NCHW → shuffled float32 NHWC), another executor."""

    def __init__(self, module, scale: int, run, channels_last: bool):
        self.run, self.scale = run, scale
        self.dtype = next(module.parameters()).dtype
        self.format = torch.channels_last if channels_last else torch.contiguous_format

    def __call__(self, x):
        return shuffle_nhwc(self.run(x.to(self.dtype).contiguous(memory_format=self.format)), self.scale)


def _onnx_bytes(module) -> bytes:
    buf = io.BytesIO()
    x = torch.rand(1, module[0].in_channels, 64, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated; it is fine for convs
        torch.onnx.export(module, (x,), buf, input_names=["x"], output_names=["y"], dynamo=False,
                          dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}, "y": {0: "n", 2: "h", 3: "w"}})
    return buf.getvalue()


def _ort_runner(module):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = torch.get_num_threads(), 1
    sess = ort.InferenceSession(_onnx_bytes(module), opts, providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(sess.run(None, {"x": x.float().numpy()})[0])


# ------------------------------------------------------------------------------------------- timing
def peer_and_bicubic() -> dict:
    rows = {"cv2 bicubic (INTER_CUBIC)":
            lambda rgb: cv2.resize(rgb, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)}
    if PEER.is_file():
        sr = cv2.dnn_superres.DnnSuperResImpl_create()
        sr.readModel(str(PEER))
        sr.setModel("espcn", 4)
        rows["OpenCV dnn_superres ESPCN_x4 (peer)"] = lambda rgb: sr.upsample(rgb[:, :, ::-1].copy())
    return rows


def time_rows(rows: dict, img: np.ndarray, runs: int) -> dict:
    for fn in rows.values():  # warm-up: oneDNN primitive creation, compile, ORT session init
        fn(img)
    times = {name: [] for name in rows}
    for _ in range(runs):
        for name, fn in rows.items():
            start = time.perf_counter()
            fn(img)
            times[name].append(time.perf_counter() - start)
    out_mp = img.shape[0] * img.shape[1] * 16 / 1e6
    return {name: out_mp / float(np.median(t)) for name, t in times.items()}


def speed_table(base: Upscaler, args) -> str:
    kinds = path_kinds(args, {"fp32 eager (NCHW)": "fp32_eager", "fp32 channels_last, fused+prepacked": "fp32_cl",
                              "bf16 channels_last, fused+prepacked": "bf16_cl"})
    rows = {}
    for label, kind in kinds.items():
        try:
            up = variant(base, kind)
            default = " (default)" if up.precision == _default_precision() and kind.endswith("_cl") else ""
            rows[f"ours: {label}{default}"] = up.upscale
        except Exception as exc:  # an optional backend missing is a row we say we skipped, not a crash
            print(f"skipped {label}: {type(exc).__name__}: {exc}", file=sys.stderr)
    rows |= peer_and_bicubic()
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    mps = time_rows(rows, img, args.runs)
    peer = next((v for k, v in mps.items() if "peer" in k), None)
    lines = ["| method | MP/s (output, median) | x peer |", "|---|---:|---:|"]
    for name, v in mps.items():
        lines.append(f"| {name} | {v:.1f} | {v / peer:.2f} |" if peer else f"| {name} | {v:.1f} | – |")
    return "\n".join(lines)


def path_kinds(args, eager: dict[str, str]) -> dict[str, str]:
    """Row label → variant kind: the given eager paths, then the optional backends the flags leave in."""
    kinds = dict(eager)
    if not args.no_ort:
        kinds["fp32 onnxruntime"] = "fp32_ort"
    if not args.no_compile:
        kinds |= {"fp32 torch.compile": "fp32_compile", "bf16 torch.compile": "bf16_compile"}
    return kinds


def _default_precision() -> str:
    from model.upscaler import default_precision

    return default_precision(torch.device("cpu"))


# ------------------------------------------------------------------------------------------- quality
def psnr_table(base: Upscaler, limit: int, args) -> str:
    from skimage.transform import pyramid_reduce

    from model import data as D
    from model import metrics as M

    files = sorted((DATA / "faces" / "val").glob("*.jpg"))[:limit]
    if not files:
        return f"(no val faces under {DATA / 'faces' / 'val'}; PSNR cost not measured)"
    hrs = [D.seed_hr(D.decode(p)) for p in files]
    lrs = [np.clip(np.rint(pyramid_reduce(h, downscale=4, channel_axis=-1) * 255), 0, 255).astype(np.uint8)
           for h in hrs]
    kinds = path_kinds(args, {"fp32 channels_last, fused+prepacked": "fp32_cl", "fp32 eager (NCHW)": "fp32_eager",
                              "bf16 channels_last, fused+prepacked": "bf16_cl"})
    lines = [f"| path | val Y-PSNR (dB, {len(files)} faces) | Δ vs fp32 (dB) | max |Δ| 8-bit levels |",
             "|---|---:|---:|---:|"]
    ref_out = ref_psnr = None
    for label, kind in kinds.items():
        try:
            up = variant(base, kind)
        except Exception as exc:
            print(f"skipped {label}: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        try:
            outs = [up.upscale(lr) for lr in lrs]
        except Exception as exc:  # report the path as broken rather than lose the other rows
            lines.append(f"| {label} | failed: {type(exc).__name__} | | |")
            continue
        value = float(np.mean([M.y_psnr(o, h) for o, h in zip(outs, hrs)]))
        if ref_out is None:
            ref_out, ref_psnr = outs, value
        diff = max(int(np.abs(o.astype(int) - r.astype(int)).max()) for o, r in zip(outs, ref_out))
        lines.append(f"| {label} | {value:.4f} | {value - ref_psnr:+.4f} | {diff} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- RSS
RSS_CHILD = """
import resource, sys, time, numpy as np, torch
sys.path.insert(0, {repo!r})
torch.set_num_threads({threads})
from bench.speed import load_shipped
weights = {weights!r}
up, desc = load_shipped(weights and __import__("pathlib").Path(weights), {tile}, precision=None)
img = np.random.default_rng(0).integers(0, 256, (3000, 4000, 3), dtype=np.uint8)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
out = up.upscale(img)
took = time.perf_counter() - start
assert out.shape == (12000, 16000, 3)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(f"3000x4000 RGB → 12000x16000 ({{up.precision}}, tile {tile}, {threads} threads): {{took:.1f}} s, "
      f"peak RSS {{peak / 1024:.0f}} MiB (before upscale {{before / 1024:.0f}} MiB; output array "
      f"{{out.nbytes / 2**20:.0f}} MiB) — {{desc}}")
"""


def rss_report(args) -> str:
    """Peak RSS in a fresh process, so nothing this process allocated counts."""
    code = RSS_CHILD.format(repo=str(REPO), threads=args.threads, tile=args.tile,
                            weights=str(args.weights) if args.weights else None)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    return res.stdout.strip() or res.stderr.strip()[-2000:]


def macs_per_lr_pixel(config: ESPCNConfig) -> int:
    """Multiply-adds per input pixel: what bounds the speed of a net this small on a CPU."""
    widths = [config.channels, *config.widths, config.channels * config.scale ** 2]
    kernels = [config.first_kernel] + [3] * len(config.widths)
    return sum(k * k * cin * cout for k, cin, cout in zip(kernels, widths, widths[1:]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, default=None, help="default: model/weights/espcn_x4.pt")
    p.add_argument("--size", type=int, default=512, help="input edge (default 512)")
    p.add_argument("--tile", type=int, default=256, help="Upscaler tile (default 256, the service's)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=7, help="timed rounds after one warm-up (default 7)")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile rows")
    p.add_argument("--no-ort", action="store_true", help="skip the onnxruntime row")
    p.add_argument("--psnr", type=int, default=0, metavar="N", help="also measure PSNR cost on N val faces")
    p.add_argument("--rss", action="store_true", help="also measure peak RSS on a 3000x4000 photo")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    base, desc = load_shipped(args.weights, args.tile)
    print(f"net: {desc}, {macs_per_lr_pixel(base.config) / 1e3:.1f}k MAC per LR pixel (peer ESPCN_x4: "
          f"24.6k, on Y); {args.size}x{args.size} RGB in, tile {args.tile}, {args.threads} threads, "
          f"torch {torch.__version__}, OpenCV {cv2.__version__}, "
          f"{platform.processor() or platform.machine()}, "
          f"load avg {os.getloadavg()[0]:.2f}\n")
    print(speed_table(base, args))
    if args.psnr:
        print("\n" + psnr_table(base, args.psnr, args))
    if args.rss:
        print("\n" + rss_report(args))
    print(f"\nload avg at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
