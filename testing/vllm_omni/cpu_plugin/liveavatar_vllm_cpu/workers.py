"""vLLM-Omni's stage workers on the CPU: vLLM's `CPUWorker` running vLLM-Omni's model runners.

A runner here is vLLM-Omni's GPU runner (AR for thinker/talker, generation for code2wav) built the way
vLLM builds its own `CPUModelRunner`: inside the CPU runner's context (no accelerator calls, placeholder
CUDA events and streams), with the CPU runner's device hooks, CUDA graphs and cascade attention off. The
hooks are borrowed from `CPUModelRunner` itself, not re-implemented. The v2 model runner is not used: it
lacks vLLM-Omni's hooks.
"""

from __future__ import annotations

from typing import Any

import torch
from vllm.logger import init_logger
from vllm.v1.worker import cpu_model_runner
from vllm.v1.worker.cpu_model_runner import CPUModelRunner
from vllm.v1.worker.cpu_worker import CPUWorker
from vllm.v1.worker.gpu_model_runner import GPUModelRunner
from vllm_omni.worker.gpu_ar_model_runner import GPUARModelRunner
from vllm_omni.worker.gpu_generation_model_runner import GPUGenerationModelRunner
from vllm_omni.worker.mixins import OmniWorkerMixin

logger = init_logger(__name__)

# The CPUModelRunner methods that replace a GPU runner's device work (synchronisation, CUDA events,
# device-property queries, device tensors, Triton kernels, graph warm-up).
CPU_HOOKS = ("_init_device_properties", "_sync_device", "_zero_block_ids", "_to_list", "warming_up_model",
             "_postprocess_tensors", "_postprocess_triton")


class _CpuDeviceHooks(GPUModelRunner):
    """Sits just above vLLM's GPUModelRunner in a runner's MRO and holds `CPUModelRunner`'s device hooks, so a
    vLLM-Omni override that calls `super()` (e.g. `_to_list`) reaches the CPU version, not the CUDA one."""


for _name in CPU_HOOKS:
    setattr(_CpuDeviceHooks, _name, getattr(CPUModelRunner, _name))


class _CpuConstruction:
    """First in a runner's MRO: builds the runner the way vLLM builds `CPUModelRunner`."""

    def __init__(self, vllm_config: Any, device: torch.device) -> None:
        cpu_model_runner._set_torch_accelerator_to_noop()
        with cpu_model_runner._torch_cuda_wrapper():
            super().__init__(vllm_config, device)  # type: ignore[call-arg]
        self.use_cuda_graph = False
        self.cascade_attn_enabled = False
        self._postprocess_tensors()  # type: ignore[attr-defined]
        self._postprocess_triton()  # type: ignore[attr-defined]


class CpuARModelRunner(_CpuConstruction, GPUARModelRunner, _CpuDeviceHooks):
    """vLLM-Omni's autoregressive runner (thinker, talker) on the CPU."""


class CpuGenerationModelRunner(_CpuConstruction, GPUGenerationModelRunner, _CpuDeviceHooks):
    """vLLM-Omni's generation runner (code2wav) on the CPU."""


class _CpuOmniWorker(OmniWorkerMixin, CPUWorker):
    """vLLM's CPU worker (memory binding, gloo, thread binding) with a vLLM-Omni runner in place of its own."""

    model_runner_cls: type

    def init_device(self) -> None:
        super().init_device()  # builds vLLM's own CPU runner; replaced below (its buffers are small)
        if self.use_v2_model_runner:
            logger.warning("the vLLM-Omni CPU worker uses the v1 model runner (v2 lacks vLLM-Omni's hooks)")
            self.use_v2_model_runner = False
        self.model_runner = self.model_runner_cls(self.vllm_config, torch.device("cpu"))


class CpuARWorker(_CpuOmniWorker):
    """Thinker and talker stages."""

    model_runner_cls = CpuARModelRunner


class CpuGenerationWorker(_CpuOmniWorker):
    """The code2wav stage."""

    model_runner_cls = CpuGenerationModelRunner
