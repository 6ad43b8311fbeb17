"""Old-print degradations (model/print_damage.py) and the training mix that uses them."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from model import degrade as G  # noqa: E402
from model import print_damage as P  # noqa: E402
from model.train_config import load_config, override  # noqa: E402
from tests.model.test_data_pipeline import _face  # noqa: E402


def _contrast(x: np.ndarray) -> float:
    return float(np.std(x.mean(axis=2)))


def test_fade_lowers_contrast_and_saturation_and_casts_yellow():
    hr = _face(96, 96)
    faded = P.colour_fade(hr, 0.5, (1.04, 1.0, 0.88))
    x = hr.astype(np.float32) / 255
    assert faded.dtype == np.float32 and faded.shape == hr.shape
    assert _contrast(faded) < 0.8 * _contrast(x)
    assert np.std(faded, axis=2).mean() < np.std(x, axis=2).mean()  # less saturated
    assert faded[..., 2].mean() < faded[..., 0].mean()  # yellowed: blue falls below red
    assert np.array_equal(P.colour_fade(hr, 0.0, (1, 1, 1)), x)


@pytest.mark.parametrize("blur", [lambda x: P.defocus_blur(x, 2.5), lambda x: P.motion_blur(x, 7, 30)])
def test_blurs_keep_brightness_and_remove_detail(blur):
    hr = _face(96, 96)
    out = blur(hr)
    x = hr.astype(np.float32) / 255
    assert abs(float(out.mean()) - float(x.mean())) < 2e-3  # normalised kernels, reflected borders
    assert np.abs(np.diff(out, axis=1)).mean() < 0.8 * np.abs(np.diff(x, axis=1)).mean()


def test_motion_blur_smears_along_its_direction_only():
    dot = np.zeros((31, 31, 3), np.float32)
    dot[15, 15] = 1.0
    out = P.motion_blur(dot, 9, 0.0)[..., 0]  # horizontal
    assert np.count_nonzero(out[15] > 1e-3) >= 7 and np.count_nonzero(out[:, 15] > 1e-3) <= 2


def test_halftone_adds_a_periodic_screen_that_a_downscale_turns_into_moire():
    flat = np.full((64, 64, 3), 0.5, np.float32)
    screened = P.halftone(flat, 4.0, 0.0, 0.2)
    spectrum = np.abs(np.fft.fft2(screened[..., 0] - screened[..., 0].mean()))
    assert spectrum.max() > 50 * np.median(spectrum)  # a few strong frequencies: the screen
    assert abs(screened.mean() - 0.5) < 0.01
    assert np.std(G.down_pyramid_fast(P.halftone(flat, 4.4, 20.0, 0.2))) > 1e-3  # aliased, not averaged away


def test_film_grain_is_clumped_seeded_and_strongest_in_midtones():
    flat = np.concatenate([np.full((64, 64, 3), 0.5), np.full((64, 64, 3), 0.02)], axis=1).astype(np.float32)
    a = P.film_grain(flat, 8.0, 0.8, np.random.default_rng(1))
    assert np.array_equal(a, P.film_grain(flat, 8.0, 0.8, np.random.default_rng(1)))
    mid, dark = a[:, :64, 0] - 0.5, a[:, 64:, 0] - 0.02
    assert 5 / 255 < mid.std() < 12 / 255 and dark.std() < 0.6 * mid.std()
    neighbours = np.corrcoef(mid[:, :-1].ravel(), mid[:, 1:].ravel())[0, 1]
    assert neighbours > 0.3  # grain clumps; per-pixel noise would be ~0


def test_double_jpeg_differs_from_either_single_generation():
    lr = _face(48, 48).astype(np.float32) / 255
    twice = P.double_jpeg(lr, 50, 70, (3, 5))
    assert twice.shape == lr.shape and twice.dtype == np.float32
    for once in (P.jpeg_round_trip(lr, 50), P.jpeg_round_trip(lr, 70)):
        assert np.abs(twice - once).mean() > 1e-3


PRINTS = {"fade": {"p": 1, "amount": [0.3, 0.3]},
          "halftone": {"p": 1, "period": [4, 4], "strength": [0.2, 0.2]},
          "defocus": {"p": 1, "radius": [1, 1]}, "grain": {"p": 1, "sigma": [5, 5], "clump": [0.5, 0.5]},
          "double_jpeg": {"p": 1, "quality": [60, 60]}}


def test_training_mix_with_prints_is_seeded_and_keeps_the_fade_in_the_target():
    hr = _face(176, 176)
    cfg = {"mode": "mix", "gray": {"p": 0}, "print": PRINTS}
    hr1, lr1 = G.degrade_pair(hr, cfg, np.random.default_rng(5))
    hr2, lr2 = G.degrade_pair(hr, cfg, np.random.default_rng(5))
    assert np.array_equal(hr1, hr2) and np.array_equal(lr1, lr2)
    assert hr1.dtype == np.uint8 and lr1.shape == (44, 44, 3) and 0 <= lr1.min() and lr1.max() <= 1
    assert _contrast(hr1) < 0.9 * _contrast(hr)  # faded print = faded target: the tone is kept
    without = G.degrade_pair(hr, {"mode": "mix", "gray": {"p": 0}}, np.random.default_rng(5))
    assert np.array_equal(without[0], hr)  # no print section: the target is the photo itself


def test_config_overrides_are_validated():
    cfg = override(load_config("espcn_rb_x4"), "model.blocks=2")
    assert cfg["model"]["blocks"] == 2 and cfg["data"]["splits"] == ["train", "train_extra"]
    assert override(cfg, "model.widths=[48, 32]")["model"]["widths"] == [48, 32]
    with pytest.raises(ValueError, match="no such setting"):
        override(cfg, "train.epochz=3")
    with pytest.raises(ValueError, match="KEY=VALUE"):
        override(cfg, "train.epochs")
    with pytest.raises(ValueError, match="channels"):
        override(cfg, "model.channels=3")
