"""Fixtures shared by the model tests."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from model.espcn import ESPCN, ESPCNConfig, count_parameters


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Images here are tiny: one thread is fastest, and OpenMP barriers crawl when a busy neighbour
    holds the other core (10x slower measured), which would make the suite's time a lottery. OpenVINO
    takes torch's thread count when an Upscaler is built, so it runs on one thread too."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def weights(tmp_path) -> Path:
    """A tiny ESPCN's weights and model card (for the CLI: fast on any image)."""
    torch.manual_seed(0)
    net = ESPCN(ESPCNConfig(channels=1, widths=(8,), first_kernel=3, residual=True))
    path = tmp_path / "w" / "tiny.pt"
    path.parent.mkdir()
    torch.save(net.state_dict(), path)
    path.with_suffix(".json").write_text(json.dumps({
        "name": "tiny", "version": "0.0.1", "architecture": net.config.to_dict(),
        "parameters": count_parameters(net), "color": "y_bt601"}))
    return path
