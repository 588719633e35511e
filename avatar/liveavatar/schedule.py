"""The few-step flow-matching Euler schedule LiveAvatar was distilled for (4 steps, shift 3).

Same numbers as diffusers' `FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3)` after
`set_timesteps(4)`: the timesteps span the *shifted* training sigmas [sigma_min, 1] and are shifted once
more, which gives sigmas 1, .857692, .602151, .0089286, 0 (the "double shift" of the reference).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def _shift(sigma, shift: float):
    return shift * sigma / (1 + (shift - 1) * sigma)


@dataclass(frozen=True)
class FlowMatchSchedule:
    """Timesteps [steps] and sigmas [steps + 1] (float32, ending in 0) of the Euler sampler."""

    timesteps: torch.Tensor
    sigmas: torch.Tensor

    @classmethod
    def build(cls, steps: int = 4, shift: float = 3.0, num_train_timesteps: int = 1000) -> "FlowMatchSchedule":
        """The schedule for `steps` Euler steps at `shift` (computed in float64, stored in float32)."""
        n = num_train_timesteps
        # the smallest shifted training sigma, in float32 as the training table holds it
        sigma_min = _shift(torch.tensor([1.0], dtype=torch.float32) / n, shift).item()
        t = np.linspace(n * 1.0, sigma_min * n, steps)
        sigmas = torch.from_numpy(_shift(t / n, shift)).to(torch.float32)
        return cls(timesteps=sigmas * n, sigmas=torch.cat([sigmas, torch.zeros(1)]))

    def __len__(self) -> int:
        return len(self.timesteps)

    def step(self, i: int, velocity: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Euler update of step i in float32: x + (sigma[i+1] - sigma[i]) · v."""
        dt = self.sigmas[i + 1] - self.sigmas[i]
        return (x.float() + dt * velocity.float()).to(x.dtype)
