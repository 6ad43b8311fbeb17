"""The training set: decoded faces in memory and the per-epoch batches (crop → flip → degrade → colour).

Batches of epoch ``e`` come from ``numpy.random.default_rng([seed, e])`` alone, so a resumed run sees
exactly the batches an uninterrupted one would have.
"""
from __future__ import annotations

import numpy as np

from model import data as D
from model import degrade as G


class TrainSet:
    """Decoded faces in memory + per-epoch batch generator (crop → flip → degrade → colour)."""

    def __init__(self, cfg: dict, images: list[np.ndarray]):
        self.cfg = cfg
        self.images = images
        d = cfg["data"]
        self.size = int(d["hr_size"])
        self.scale = int(cfg["model"]["scale"])
        self.luma = cfg["color"] == "y_bt601"
        self.deg = cfg["degrade"]
        self.static = d["crop"] == "center" and self.deg.get("mode", "pyramid") in G.DOWNSCALERS
        self.hr_center = [D.seed_hr(im, self.size) for im in images] if d["crop"] == "center" else None
        self.cache = None
        if self.static:  # deterministic pairs: degrade once
            self.cache = [G.degrade_pair(hr, self.deg, np.random.default_rng(0), self.scale)[1] for hr in self.hr_center]

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, i: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        d = self.cfg["data"]
        if self.static:
            hr, lr = self.hr_center[i], self.cache[i]
            if d["flip"] and rng.random() < 0.5:
                hr, lr = hr[:, ::-1], lr[:, ::-1]
        else:
            if d["crop"] == "center":
                hr = self.hr_center[i]
                if d["flip"] and rng.random() < 0.5:
                    hr = np.ascontiguousarray(hr[:, ::-1])
            elif d["crop"] == "random":
                hr = D.random_crop(self.images[i], rng, self.size, tuple(d["crop_scale"]), bool(d["flip"]))
            else:
                raise ValueError(f"unknown crop {d['crop']!r}")
            hr, lr = G.degrade_pair(hr, self.deg, rng, self.scale)
        if self.luma:
            return D.rgb_to_y_float(lr), D.rgb_to_y_float(hr)
        return lr, hr

    def batches(self, epoch: int, seed: int, batch_size: int):
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(len(self))
        for s in range(0, len(order) - batch_size + 1, batch_size):  # drop the ragged tail
            pairs = [self.sample(int(i), rng) for i in order[s : s + batch_size]]
            yield D.to_tensor_batch([p[0] for p in pairs]), D.to_tensor_batch([p[1] for p in pairs])

    def steps_per_epoch(self, batch_size: int) -> int:
        return len(self) // batch_size
