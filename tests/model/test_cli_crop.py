"""`python -m model upscale --crop x,y,w,h | --face N [--aspect A]`: exactly 4x the region, in the pixels
as shown (EXIF orientation applied); faces numbered left to right; clear errors."""
from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from model import cli  # noqa: E402
from model.faces import find_portraits  # noqa: E402
from model.images import decode_image  # noqa: E402
from model.upscaler import Upscaler  # noqa: E402
from tests.conftest import require_faces  # noqa: E402
from tests.group_photo import group_photo  # noqa: E402



def rotated_png(upright: np.ndarray) -> bytes:
    """`upright` stored turned a quarter, with EXIF orientation 6 to show it upright."""
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(np.rot90(upright, k=1))).save(buf, "PNG", exif=exif)
    return buf.getvalue()


def run(tmp_path: Path, weights: Path, *args: str) -> int:
    return cli.main(["upscale", str(tmp_path / "in.png"), "--out", str(tmp_path / "out"), "--weights",
                     str(weights), "--device", "cpu", "--tile", "8", *args])


def result(tmp_path: Path) -> np.ndarray:
    return np.asarray(Image.open(tmp_path / "out" / "in.png"))


def test_crop_is_exactly_4x_the_region_as_shown(tmp_path, weights):
    upright = np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8)  # shown 40 x 30
    (tmp_path / "in.png").write_bytes(rotated_png(upright))
    assert run(tmp_path, weights, "--crop", "25,3,15,20") == 0  # x + width = 40: only fits as shown
    expected = Upscaler.from_weights(weights, device="cpu", tile=8).upscale(upright[3:23, 25:40])
    assert result(tmp_path).shape == (80, 60, 3) and np.array_equal(result(tmp_path), expected)


def test_a_crop_outside_the_photo_fails_that_file(tmp_path, weights, capsys):
    (tmp_path / "in.png").write_bytes(rotated_png(np.zeros((30, 40, 3), np.uint8)))
    assert run(tmp_path, weights, "--crop", "0,0,30,40") == 1  # fits the stored 30 x 40, not 40 x 30 shown
    err = capsys.readouterr().err
    assert "not inside the 40x30 photo" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "in.png").exists()


@pytest.mark.parametrize("args", [["--crop", "1,2,3"], ["--crop", "a,b,c,d"], ["--face", "0"],
                                  ["--crop", "0,0,4,4", "--face", "1"], ["--aspect", "3:4"],
                                  ["--face", "1", "--aspect", "16:9"]])
def test_bad_options_are_usage_errors(tmp_path, weights, args):
    (tmp_path / "in.png").write_bytes(rotated_png(np.zeros((30, 40, 3), np.uint8)))
    with pytest.raises(SystemExit) as info:
        run(tmp_path, weights, *args)
    assert info.value.code == 2


def test_no_such_face_is_a_clear_error(tmp_path, weights, capsys):
    (tmp_path / "in.png").write_bytes(rotated_png(np.full((60, 80, 3), 90, np.uint8)))
    assert run(tmp_path, weights, "--face", "1") == 1
    err = capsys.readouterr().err
    assert "--face 1: the detector finds no faces in the photo" in err and "Traceback" not in err


@pytest.mark.data
def test_face_n_is_the_nth_from_the_left_with_its_portrait_crop(tmp_path, weights):
    paths = require_faces()
    rgb, boxes = group_photo([paths[i] for i in (21, 232, 343)], [120, 90, 70], size=(800, 420))
    (tmp_path / "in.png").write_bytes(rotated_png(rgb))
    # The second face from the left, 3:4, through the real entry point (stderr lists every face).
    res = subprocess.run([sys.executable, "-m", "model", "upscale", str(tmp_path / "in.png"), "--out",
                          str(tmp_path / "out"), "--weights", str(weights), "--device", "cpu", "--tile", "64",
                          "--face", "2", "--aspect", "3:4"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    found = find_portraits(decode_image((tmp_path / "in.png").read_bytes()), "3:4")
    assert len(found) == 3, found
    face, (x, y, w, h) = found[1]
    assert boxes[1][0] - 10 <= face.x <= boxes[1][0] + 10  # the middle person
    assert all(f"face {i}:" in res.stderr for i in (1, 2, 3)) and "<- upscaled" in res.stderr
    expected = Upscaler.from_weights(weights, device="cpu", tile=64).upscale(rgb[y:y + h, x:x + w])
    assert result(tmp_path).shape == (4 * h, 4 * w, 3) and np.array_equal(result(tmp_path), expected)
    # There is no fourth person.
    assert run(tmp_path, weights, "--face", "4") == 1
