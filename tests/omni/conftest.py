"""Fixtures for the Qwen3-Omni backends: local vLLM-Omni-compatible servers and the tiny random model."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Nothing in these tests may reach a model hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from liveavatar.testing.omni_standin import OmniWireServer, synthetic_source  # noqa: E402
from omni_tiny import TinyOmniSource, build_tiny_omni  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    # transformers' own talker call passes inputs_embeds with a repetition penalty; nothing to act on
    config.addinivalue_line("filterwarnings", "ignore:Passing `repetition_penalty` with `inputs_embeds`:UserWarning")


@pytest.fixture
def server() -> Iterator[OmniWireServer]:
    """A local server replying "Hello there, nice to meet you." then 1 s of synthetic speech in 0.25 s chunks."""
    with OmniWireServer(synthetic_source()) as running:
        yield running


@pytest.fixture(scope="session")
def tiny_omni_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random Qwen3-Omni saved once per session (config, weights, tokenizer, feature extractor)."""
    import torch

    torch.set_num_threads(1)  # two cores shared with other engineers
    return build_tiny_omni(tmp_path_factory.mktemp("tiny-qwen3-omni"))


@pytest.fixture(scope="session")
def tiny_source(tiny_omni_dir: Path) -> TinyOmniSource:
    """The tiny model loaded with from_pretrained, wrapped as a server reply source (12 talker steps)."""
    return TinyOmniSource(tiny_omni_dir, thinker_max_new_tokens=6, talker_max_new_tokens=12, chunk_frames=4)


@pytest.fixture
def tiny_server(tiny_source: TinyOmniSource) -> Iterator[OmniWireServer]:
    """A local vLLM-Omni-compatible server whose replies come from the tiny model."""
    tiny_source.generations.clear()
    with OmniWireServer(tiny_source) as running:
        yield running
