"""wav2vec2 block features: all hidden states, 50 Hz -> 25 fps at each frame's own time, past audio as context."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from liveavatar.avatar.liveavatar.features import AudioFeatures
from liveavatar.avatar.liveavatar.tiny import build_tiny_parts, byte_tokenizer


@pytest.fixture(scope="module")
def features() -> AudioFeatures:
    return build_tiny_parts(seed=0, context_s=0.5).audio


def test_block_features_are_every_other_50hz_frame_after_the_context(features):
    stream = features.stream()
    rng = np.random.default_rng(0)
    first, second = rng.uniform(-0.5, 0.5, 7680).astype(np.float32), rng.uniform(-0.5, 0.5, 7680).astype(np.float32)
    stream(first)
    out = stream(second)
    assert out.shape == (1, 25, 32, 12), "[batch, 25 hidden states, C, 12 video frames]"
    past = np.concatenate([np.zeros(8000, np.float32), first])[-8000:]  # 0.5 s of context: silence, then block 1
    window = torch.from_numpy(np.concatenate([past, second]))
    window = (window - window.mean()) / torch.sqrt(window.var(unbiased=False) + 1e-7)
    with torch.no_grad():
        hidden = features.model(window[None], output_hidden_states=True).hidden_states
    assert len(hidden) == 25
    for k in (0, 5, 11):
        for layer in (0, 12, 24):
            assert torch.allclose(out[0, layer, :, k], hidden[layer][0, 25 + 2 * k], atol=1e-5)


def test_the_past_is_context_and_streams_keep_their_own(features):
    block = np.random.default_rng(1).uniform(-0.5, 0.5, 7680).astype(np.float32)
    one, two = features.stream(), features.stream()
    fresh = one(block)
    after_loud = one(block)
    assert torch.equal(two(block), fresh), "a second stream starts from silence, whatever the first one heard"
    assert not torch.allclose(fresh, after_loud)
    with pytest.raises(ValueError, match="7680"):
        one(block[:100])


def test_byte_tokenizer_is_t5_shaped():
    assert byte_tokenizer("hi") == [ord("h") + 2, ord("i") + 2, 1]
