"""Face detection on composed group photos: recall, false positives and time, per condition and face size.

    python bench/faces.py                     # 120 held-out photos x (colour, gray, sepia); writes
                                              # bench/results/faces.json and prints a markdown table
    python bench/faces.py --split tune --photos 40 --no-write   # the split thresholds were tuned on
    python -m bench faces [args]              # the same
    python bench/faces.py --save-examples DIR # also write the first few composed photos (PNG)

Each photo is a procedural scene (gradient wall, blurred shapes, in-focus clutter) with 3–5 val
faces pasted on it through a feathered ellipse: every face 20–300 px wide (per photo one size bucket,
with a smaller face mixed in), rotated up to ±12°, faces never overlapping. Each composition is then
rendered three ways — colour, faded gray, faded sepia (lowered contrast, lifted blacks, film grain) —
and JPEG-compressed. Everything is drawn from `np.random.default_rng((seed, photo))`: same seed,
same photos.

Ground truth: CelebA val crops are framed alike, so the face box is one fixed fraction of the crop
(FACE_BOX: measured with two unrelated detectors, dlib HOG and MTCNN, on 200 val crops, whose face
centres fell within ±0.04 of it), moved with the paste and its rotation. A ground-truth face is
*found* when a detection has IoU ≥ 0.4 with its box **or** the detection's centre lies inside its
box; detections are matched greedily by confidence, one detection per face, and every detection
left unmatched (a second box on one face included) is a false positive.

Splits: `tune` uses the first 300 val faces and seed 1, `report` the other 700 and seed 2, so the
reported numbers are on photos and faces the thresholds never saw.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model.faces import find_faces  # noqa: E402

DATA = Path(os.environ.get("PORTRAIT_DATA_DIR", REPO.parent / "shared" / "data"))
VAL = DATA / "faces" / "val"
RESULTS = REPO / "bench" / "results" / "faces.json"

FACE_BOX = (0.23, 0.22, 0.54, 0.62)  # forehead-to-chin box of a val crop: x, y, w, h as fractions
BUCKETS = ((20, 40), (40, 70), (70, 150), (150, 300))  # face width in px, [lo, hi)
CONDITIONS = ("colour", "gray", "sepia")
SPLITS = {"tune": (slice(0, 300), 1), "report": (slice(300, None), 2)}
IOU_MIN = 0.4


@dataclass
class Truth:
    box: tuple[float, float, float, float]  # x, y, w, h in the photo's pixels

    @property
    def bucket(self) -> str:
        lo, hi = next((b for b in BUCKETS if self.box[2] < b[1]), BUCKETS[-1])
        return f"{lo}–{hi}"


# ----------------------------------------------------------------------------------------- composing
def scene(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A plausible, face-free backdrop: a lit wall, blurred furniture-like shapes, texture."""
    top, bottom = rng.uniform(40, 230, 3), rng.uniform(20, 200, 3)
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    img = np.broadcast_to(top * (1 - t) + bottom * t, (h, w, 3)).astype(np.float32).copy()
    for _ in range(rng.integers(4, 10)):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(w // 10, w // 2)), y0 + int(rng.integers(h // 10, h // 2))
        colour = tuple(float(c) for c in rng.uniform(0, 255, 3))
        if rng.random() < 0.6:
            cv2.rectangle(img, (x0, y0), (x1, y1), colour, -1)
        else:
            cv2.ellipse(img, (((x0 + x1) / 2, (y0 + y1) / 2), (x1 - x0, y1 - y0), float(rng.uniform(0, 180))),
                        colour, -1)
    low = rng.normal(0, 22, (max(2, h // 64), max(2, w // 64), 1)) + rng.normal(0, 6, (max(2, h // 64),
                                                                                  max(2, w // 64), 3))
    low = cv2.resize(low.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    img = cv2.GaussianBlur(img + low, (0, 0), float(rng.uniform(2, 8)))
    # In-focus clutter (foliage, fabric, wallpaper, a crowd's clothes): the texture that fools detectors.
    # Blurred noise at two scales, strong in 2–4 random patches, faint everywhere else.
    texture = sum(cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), s) * s
                  for s in (float(rng.uniform(1.5, 3)), float(rng.uniform(4, 8))))
    texture /= texture.std() + 1e-6
    patches = np.full((h, w), 0.15, np.float32)
    for _ in range(rng.integers(2, 5)):
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        cv2.ellipse(patches, ((cx, cy), (int(rng.integers(w // 6, w // 2)), int(rng.integers(h // 6, h // 2))),
                              float(rng.uniform(0, 180))), 1.0, -1)
    patches = cv2.GaussianBlur(patches, (0, 0), 15)
    img += (texture * patches * rng.uniform(15, 40))[..., None]
    return np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.float32)


def _face_widths(rng: np.random.Generator) -> list[float]:
    """3–5 widths: most from one bucket, sometimes one from the bucket below (people further back)."""
    main = int(rng.integers(0, len(BUCKETS)))
    widths = []
    for _ in range(int(rng.integers(3, 6))):
        b = main - 1 if main > 0 and rng.random() < 0.3 else main
        lo, hi = BUCKETS[b]
        widths.append(float(np.exp(rng.uniform(np.log(lo), np.log(hi - 1)))))
    return sorted(widths, reverse=True)


def _sprite(crop: np.ndarray, face_w: float, angle: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The crop scaled so its face is `face_w` wide and rotated: (rgb, alpha, face centre in the sprite)."""
    h, w = crop.shape[:2]
    s = face_w / (FACE_BOX[2] * w)
    sw, sh = max(2, round(w * s)), max(2, round(h * s))
    img = cv2.resize(crop, (sw, sh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    alpha = np.zeros((sh, sw), np.float32)
    cv2.ellipse(alpha, ((sw / 2, sh * 0.52), (sw * 0.8, sh * 0.88), 0.0), 1.0, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), max(0.7, sw * 0.035))
    centre = np.array([(FACE_BOX[0] + FACE_BOX[2] / 2) * sw, (FACE_BOX[1] + FACE_BOX[3] / 2) * sh])
    diag = int(np.ceil(np.hypot(sw, sh))) + 2
    m = cv2.getRotationMatrix2D((sw / 2, sh / 2), angle, 1.0)
    m[:, 2] += ((diag - sw) / 2, (diag - sh) / 2)
    img = cv2.warpAffine(img.astype(np.float32), m, (diag, diag), flags=cv2.INTER_LINEAR)
    alpha = cv2.warpAffine(alpha, m, (diag, diag), flags=cv2.INTER_LINEAR)
    return img, alpha, m[:, :2] @ centre + m[:, 2]


def compose(rng: np.random.Generator, faces: list[Path]) -> tuple[np.ndarray, list[Truth]]:
    """One colour group photo (uint8 RGB) and the boxes of the faces in it."""
    widths = _face_widths(rng)
    w = int(rng.integers(900, 1601) * max(1.0, widths[0] / 200))  # room for 3–5 big faces
    h = int(w * rng.uniform(0.62, 0.8))
    img = scene(rng, h, w)
    truths: list[Truth] = []
    taken: list[tuple[float, float, float, float]] = []  # sprite boxes already used (inner part)
    for face_w in widths:
        crop = cv2.cvtColor(cv2.imread(str(faces[int(rng.integers(len(faces)))])), cv2.COLOR_BGR2RGB)
        ch = crop.shape[0] * face_w / (FACE_BOX[2] * crop.shape[1])
        face_h = FACE_BOX[3] * ch
        for _ in range(200):
            sprite, alpha, centre = _sprite(crop, face_w, float(rng.uniform(-12, 12)))
            sh, sw = alpha.shape
            x0 = int(rng.integers(-sw // 4, max(-sw // 4 + 1, w - sw + sw // 4)))  # sprites may be cut by
            y0 = int(rng.integers(-sh // 4, max(-sh // 4 + 1, h - sh + sh // 4)))  # the frame, faces not
            inner = (x0 + sw * 0.2, y0 + sh * 0.2, sw * 0.6, sh * 0.6)
            cx, cy = x0 + centre[0], y0 + centre[1]
            box = (cx - face_w / 2, cy - face_h / 2, face_w, face_h)
            inside = box[0] >= 0 and box[1] >= 0 and box[0] + box[2] <= w and box[1] + box[3] <= h
            if inside and not any(_iou(inner, t) > 0 for t in taken):
                break
            if face_w > 21:  # try a little smaller, never below the smallest bucket
                face_w *= 0.95
                face_h *= 0.95
        else:
            continue
        taken.append(inner)
        truths.append(Truth(box))
        ys, xs = slice(max(0, y0), min(h, y0 + sh)), slice(max(0, x0), min(w, x0 + sw))
        a = alpha[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0, None]
        s = sprite[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
        img[ys, xs] = img[ys, xs] * (1 - a) + s * a
    return np.clip(img, 0, 255).astype(np.uint8), truths


def render(rng: np.random.Generator, img: np.ndarray, condition: str) -> np.ndarray:
    """The photo as colour, or as a faded gray or sepia print with grain; JPEG round trip."""
    if condition != "colour":
        y = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
        lo, hi = rng.uniform(0.12, 0.3), rng.uniform(0.65, 0.85)  # faded: lifted blacks, dull whites
        y = lo + (hi - lo) * y
        grain = cv2.GaussianBlur(rng.normal(0, 1, y.shape).astype(np.float32), (0, 0), 0.7)
        y = cv2.GaussianBlur(y, (0, 0), rng.uniform(0.3, 1.0))  # an old print is soft
        y = y + grain * rng.uniform(0.02, 0.045)
        tone = (1.0, 1.0, 1.0) if condition == "gray" else (1.12, 0.94, 0.70)
        out = np.clip(y[..., None] * np.array(tone, np.float32) * 255, 0, 255).astype(np.uint8)
    else:
        out = img
    _, buf = cv2.imencode(".jpg", cv2.cvtColor(out, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(70, 93))])
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


# ----------------------------------------------------------------------------------------- scoring
def _iou(a, b) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter) if inter > 0 else 0.0


def match(truths: list[Truth], detections: list) -> tuple[list[bool], int]:
    """(found per truth, false positives): greedy by confidence, IoU ≥ 0.4 or centre inside the box."""
    found = [False] * len(truths)
    fp = 0
    for d in sorted(detections, key=lambda d: -d.confidence):
        cx, cy = d.x + d.width / 2, d.y + d.height / 2
        best, best_iou = None, 0.0
        for i, t in enumerate(truths):
            if found[i]:
                continue
            iou = _iou(t.box, (d.x, d.y, d.width, d.height))
            centre_in = t.box[0] <= cx <= t.box[0] + t.box[2] and t.box[1] <= cy <= t.box[1] + t.box[3]
            if (iou >= IOU_MIN or centre_in) and iou + centre_in >= best_iou:
                best, best_iou = i, iou + centre_in
        if best is None:
            fp += 1
        else:
            found[best] = True
    return found, fp


def photos(split: str, count: int):
    """(index, {condition: image}, truths) for the split's photos, deterministic."""
    sl, seed = SPLITS[split]
    faces = sorted(VAL.glob("*.jpg"))[sl]
    for i in range(count):
        rng = np.random.default_rng((seed, i))
        img, truths = compose(rng, faces)
        yield i, {c: render(np.random.default_rng((seed, i, k)), img, c) for k, c in enumerate(CONDITIONS)}, truths


def run(split: str, count: int, detect=find_faces, save_examples: Path | None = None) -> dict:
    """Detect on every photo of every condition; tallies per condition and size bucket."""
    buckets = [f"{lo}–{hi}" for lo, hi in BUCKETS]
    tally = {c: {"photos": 0, "faces": 0, "found": 0, "fp": 0, "seconds": 0.0,
                 "buckets": {b: [0, 0] for b in buckets}} for c in CONDITIONS}
    detect(np.zeros((64, 64, 3), np.uint8))  # load the detector outside the timing
    for i, images, truths in photos(split, count):
        for c, img in images.items():
            t0 = time.perf_counter()
            dets = detect(img)
            dt = time.perf_counter() - t0
            found, fp = match(truths, dets)
            row = tally[c]
            row["photos"] += 1
            row["faces"] += len(truths)
            row["found"] += sum(found)
            row["fp"] += fp
            row["seconds"] += dt
            for t, f in zip(truths, found):
                row["buckets"][t.bucket][0] += 1
                row["buckets"][t.bucket][1] += f
            if save_examples is not None and i < 4:
                save_examples.mkdir(parents=True, exist_ok=True)
                vis = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
                for t in truths:
                    x, y, w, h = (round(v) for v in t.box)
                    cv2.rectangle(vis, (x, y), (x + w, y + h), (0, 255, 0), 1)
                for d in dets:
                    cv2.rectangle(vis, (d.x, d.y), (d.x + d.width, d.y + d.height), (0, 0, 255), 1)
                cv2.imwrite(str(save_examples / f"{split}_{i}_{c}.png"), vis)
        print(f"\r{i + 1}/{count} photos", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return summarise(tally)


def summarise(tally: dict) -> dict:
    out = {}
    for c, row in tally.items():
        out[c] = {
            "photos": row["photos"], "faces": row["faces"],
            "recall": round(row["found"] / max(1, row["faces"]), 4),
            "fp_per_photo": round(row["fp"] / max(1, row["photos"]), 3),
            "seconds_per_photo": round(row["seconds"] / max(1, row["photos"]), 3),
            "recall_by_face_width": {b: {"faces": n, "recall": round(f / n, 4) if n else None}
                                     for b, (n, f) in row["buckets"].items()},
        }
    return out


def table(results: dict) -> str:
    buckets = list(next(iter(results.values()))["recall_by_face_width"])
    head = ["condition", "photos", "faces", "recall", "FP / photo", "s / photo"] + [f"recall {b} px" for b in buckets]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for c, r in results.items():
        by = r["recall_by_face_width"]
        cells = [c, r["photos"], r["faces"], f"{r['recall']:.3f}", f"{r['fp_per_photo']:.2f}",
                 f"{r['seconds_per_photo']:.2f}"]
        cells += [f"{by[b]['recall']:.3f} ({by[b]['faces']})" if by[b]["faces"] else "–" for b in buckets]
        lines.append("| " + " | ".join(str(x) for x in cells) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=SPLITS, default="report")
    ap.add_argument("--photos", type=int, default=120, help="compositions; each is rendered 3 ways")
    ap.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS.relative_to(REPO)}")
    ap.add_argument("--save-examples", type=Path, help="write the first 4 photos per condition here")
    args = ap.parse_args()
    if not VAL.is_dir():
        print(f"face data absent: {VAL}", file=sys.stderr)
        return 2
    from model import faces

    load_before = os.getloadavg()[0]
    results = run(args.split, args.photos, save_examples=args.save_examples)
    report = {
        "split": args.split, "photos_per_condition": args.photos, "seed": SPLITS[args.split][1],
        "match_rule": f"IoU >= {IOU_MIN} or detection centre inside the face box; one detection per face",
        "detector": faces.describe(), "date": time.strftime("%Y-%m-%d"), "cpu": _cpu_model(),
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],  # start, end
        "results": results,
    }
    print(table(results))
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {RESULTS.relative_to(REPO)}", file=sys.stderr)
    return 0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() + f" ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"{platform.machine()} ({os.cpu_count()} cores)"


if __name__ == "__main__":
    raise SystemExit(main())
