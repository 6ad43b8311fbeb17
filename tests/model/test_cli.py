"""`python -m model upscale|train|evaluate`: folders, bad files, print size/DPI, dispatch."""
from __future__ import annotations

import io
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from model import cli  # noqa: E402
# `weights`: a tiny net's weights and card (tests/model/conftest.py)
from model.print_size import fit_to_print, parse_print_size  # noqa: E402



def png(h: int, w: int, mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(h * w)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode).save(buf, "PNG")
    return buf.getvalue()


def test_folder_with_a_bad_file(tmp_path, weights, capsys):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.png").write_bytes(png(12, 10))
    (src / "b.png").write_bytes(png(9, 14, "L"))
    (src / "broken.png").write_bytes(png(12, 10)[:60])
    (src / "notes.txt").write_text("not an image, and not picked up: wrong suffix")
    code = cli.main(["upscale", str(src), "--out", str(tmp_path / "out"), "--weights", str(weights),
                     "--device", "cpu", "--tile", "8"])
    err = capsys.readouterr().err
    assert code == 1
    assert "broken.png" in err and "not a usable image" in err and "Traceback" not in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png"]
    with Image.open(tmp_path / "out" / "a.png") as a, Image.open(tmp_path / "out" / "b.png") as b:
        assert (a.size, a.mode) == ((40, 48), "RGB")
        assert (b.size, b.mode) == ((56, 36), "L")


def test_all_good_files_exit_0_and_missing_input_is_an_error(tmp_path, weights, capsys):
    (tmp_path / "one.png").write_bytes(png(5, 6))
    out = tmp_path / "out"
    args = ["--out", str(out), "--weights", str(weights), "--device", "cpu"]
    assert cli.main(["upscale", str(tmp_path / "one.png"), *args]) == 0
    assert cli.main(["upscale", str(tmp_path / "one.png"), str(tmp_path / "absent.jpg"), *args]) == 1
    assert "absent.jpg: no such file" in capsys.readouterr().err


def test_missing_weights_is_one_line_not_a_traceback(tmp_path, capsys):
    (tmp_path / "one.png").write_bytes(png(5, 6))
    code = cli.main(["upscale", str(tmp_path / "one.png"), "--out", str(tmp_path / "o"),
                     "--weights", str(tmp_path / "nope.pt"), "--device", "cpu"])
    assert code == 2 and "no weights at" in capsys.readouterr().err


@pytest.mark.parametrize("h,w,expected", [(40, 30, (1050, 1400)),   # portrait → 11x14
                                          (30, 40, (1400, 1050)),   # landscape → 14x11
                                          (30, 30, (1100, 1100))])  # square → the order as given
def test_print_size_fits_orientation_and_writes_dpi(tmp_path, weights, h, w, expected):
    (tmp_path / "p.png").write_bytes(png(h, w))
    code = cli.main(["upscale", str(tmp_path / "p.png"), "--out", str(tmp_path / "out"), "--weights",
                     str(weights), "--device", "cpu", "--print-size", "11x14in", "--dpi", "100"])
    assert code == 0
    with Image.open(tmp_path / "out" / "p.png") as im:
        assert im.size == expected
        assert tuple(round(d) for d in im.info["dpi"]) == (100, 100)


def test_print_size_parsing_and_fitting():
    assert parse_print_size("11x14in") == (11.0, 14.0)
    assert parse_print_size("11x14") == (11.0, 14.0)
    assert parse_print_size("25.4x50.8cm") == pytest.approx((10.0, 20.0))
    for bad in ("11by14", "0x14in", "11x14ft", ""):
        with pytest.raises(ValueError):
            parse_print_size(bad)
    assert fit_to_print(2400, 3200, (11, 14), 300) == (3150, 4200)  # 600x800 scan, 4x, 11x14 at 300 DPI
    assert fit_to_print(16000, 12000, (11, 14), 300) == (4200, 3150)  # shrinking works as well


def test_bad_print_size_is_a_usage_error(tmp_path, weights):
    with pytest.raises(SystemExit) as info:
        cli.main(["upscale", str(tmp_path), "--out", str(tmp_path / "o"), "--print-size", "huge"])
    assert info.value.code == 2


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_train_and_evaluate_are_dispatched_with_their_arguments(command, monkeypatch):
    seen = []
    fake = types.ModuleType(f"model.{command}")
    fake.main = lambda argv: seen.append(argv) or 7
    monkeypatch.setitem(sys.modules, f"model.{command}", fake)
    assert cli.main([command, "--config", "espcn_x4", "--help", "--out", "runs/x"]) == 7
    assert seen == [["--config", "espcn_x4", "--help", "--out", "runs/x"]]


def test_python_dash_m_model_entry_point(tmp_path, weights):
    (tmp_path / "x.png").write_bytes(png(6, 7))
    (tmp_path / "y.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    res = subprocess.run([sys.executable, "-m", "model", "upscale", str(tmp_path / "x.png"),
                          str(tmp_path / "y.jpg"), "--out", str(tmp_path / "out"), "--weights", str(weights),
                          "--device", "cpu"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1, res.stderr
    assert "y.jpg" in res.stderr and "Traceback" not in res.stderr
    assert (tmp_path / "out" / "x.png").is_file()
