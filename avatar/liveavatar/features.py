"""The real conditioning parts around the DiT, through transformers: wav2vec2 audio features and umT5 text.

Audio: every wav2vec2 hidden state (embedding output + each layer: 25 for the large model) at 50 Hz, taken
for the block's 0.48 s with `context_s` seconds of past audio in front (wav2vec2 is bidirectional, so the
past gives the block's frames their context; no future is used, so there is no look-ahead latency).
Video frame k of a block takes the 50 Hz frame at its own time k/25 s (every other frame), which is what
the reference's whole-file 50 → 30 → 25 fps interpolation amounts to without needing the file's end.

Text: the umT5 encoder output of a prompt, trimmed to its tokens (EOS included), computed once per prompt.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import torch

SAMPLE_RATE = 16000
WAV2VEC_HOP = 320  # samples per 50 Hz wav2vec2 frame


class AudioFeatures:
    """wav2vec2 hidden states at video rate for blocks of 16 kHz audio; `stream()` gives one stream's state."""

    def __init__(self, model: torch.nn.Module, fps: float = 25.0, frames_per_block: int = 12, context_s: float = 2.0,
                 normalize: bool = True) -> None:
        self.model = model.eval().requires_grad_(False)
        self.normalize = normalize
        self.frames_per_block = frames_per_block
        hops_per_frame = SAMPLE_RATE / fps / WAV2VEC_HOP
        if hops_per_frame != int(hops_per_frame):
            raise ValueError(f"{fps} fps does not map to whole 50 Hz wav2vec2 frames")
        self.hops_per_frame = int(hops_per_frame)
        self.block_samples = frames_per_block * self.hops_per_frame * WAV2VEC_HOP  # 7680 at 25 fps
        self.context_samples = int(round(context_s * SAMPLE_RATE / WAV2VEC_HOP)) * WAV2VEC_HOP

    def stream(self) -> "AudioStream":
        """A new stream of blocks (its past starts as silence); streams share the model, not their past."""
        return AudioStream(self)

    @torch.no_grad()
    def window_features(self, window: np.ndarray) -> torch.Tensor:
        """Features [1, layers, C, frames_per_block] of the block that ends `window` (context + block samples)."""
        x = torch.from_numpy(np.ascontiguousarray(window, np.float32))
        if self.normalize:  # Wav2Vec2FeatureExtractor(do_normalize=True): zero mean, unit variance per input
            x = (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-7)
        weight = next(self.model.parameters())
        hidden = self.model(x[None].to(weight.device, weight.dtype), output_hidden_states=True).hidden_states
        first = self.context_samples // WAV2VEC_HOP
        picks = [first + k * self.hops_per_frame for k in range(self.frames_per_block)]
        feats = torch.stack([h[0, picks] for h in hidden])  # layers, frames, C
        return feats.permute(0, 2, 1)[None].float()


class AudioStream:
    """One stream's audio context: each block is encoded with the `context_s` seconds of audio before it."""

    def __init__(self, features: AudioFeatures) -> None:
        self.features = features
        self._past = np.zeros(features.context_samples, np.float32)

    def __call__(self, pcm: np.ndarray) -> torch.Tensor:
        """Features of the next block; `pcm` holds exactly `block_samples` samples at 16 kHz."""
        pcm = np.asarray(pcm, np.float32)
        if pcm.shape != (self.features.block_samples,):
            raise ValueError(f"a block needs {self.features.block_samples} samples at 16 kHz, got shape {pcm.shape}")
        window = np.concatenate([self._past, pcm])
        self._past = window[len(window) - self.features.context_samples:].copy()
        return self.features.window_features(window)


_SPACES = re.compile(r"\s+")


class TextEncoder:
    """umT5 encoder embeddings [L, dim] of a prompt (L = its tokens incl. EOS), cached per prompt (LRU)."""

    def __init__(self, model: torch.nn.Module, tokenize: Callable[[str], list[int]], text_len: int = 512, cache_size: int = 8) -> None:
        self.model = model.eval().requires_grad_(False)
        self.tokenize = tokenize
        self.text_len = text_len
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._cache_size = cache_size

    @torch.no_grad()
    def __call__(self, prompt: str) -> torch.Tensor:
        prompt = _SPACES.sub(" ", prompt).strip()  # the reference's whitespace clean
        if prompt in self._cache:
            self._cache.move_to_end(prompt)
            return self._cache[prompt]
        ids = self.tokenize(prompt)[: self.text_len]
        weight = next(self.model.parameters())
        ids_t = torch.tensor([ids], device=weight.device)
        out = self.model(input_ids=ids_t, attention_mask=torch.ones_like(ids_t)).last_hidden_state[0].float()
        self._cache[prompt] = out
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return out


def hf_tokenizer(path: str) -> Callable[[str], list[int]]:
    """A local Hugging Face tokenizer folder (e.g. google/umt5-xxl) as a text -> ids function; never downloads."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    return lambda text: tok(text, add_special_tokens=True).input_ids
