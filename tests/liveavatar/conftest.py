"""Shared fixtures for the LiveAvatar tests: the golden-vector folder and a single-threaded torch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from liveavatar.testing.parity import FIXTURES_ENV, default_fixtures

FIXTURES = default_fixtures()


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> None:
    torch.set_num_threads(1)


def fixture_dir(part: str) -> Path:
    """The fixture sub-folder `part` (dit or vae); skips the test with the reason when it is absent."""
    path = FIXTURES / part
    if not path.is_dir():
        pytest.skip(f"golden fixtures not found at {path} (expected ../shared/fixtures/liveavatar-tiny "
                    f"beside the repository or above it, or ${FIXTURES_ENV})")
    return path


@pytest.fixture(scope="session")
def dit_dir() -> Path:
    """The DiT fixture folder (skips when absent)."""
    return fixture_dir("dit")


@pytest.fixture(scope="session")
def vae_dir() -> Path:
    """The VAE fixture folder (skips when absent)."""
    return fixture_dir("vae")


@pytest.fixture(scope="session")
def dit_fixture(dit_dir: Path) -> dict:
    """config.json, weights, io and forward_single tensors of the DiT golden run."""
    from safetensors.torch import load_file

    path = dit_dir
    return {
        "config": json.loads((path / "config.json").read_text()),
        "weights": load_file(path / "weights.safetensors"),
        "io": load_file(path / "io.safetensors"),
        "single": load_file(path / "forward_single.safetensors"),
    }


@pytest.fixture(scope="session")
def vae_fixture(vae_dir: Path) -> dict:
    """config.json, decoder weights and io tensors of the VAE golden run."""
    from safetensors.torch import load_file

    path = vae_dir
    return {
        "config": json.loads((path / "config.json").read_text()),
        "weights": load_file(path / "decoder_weights.safetensors"),
        "io": load_file(path / "io.safetensors"),
    }
