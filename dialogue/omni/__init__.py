"""Qwen3-Omni plumbing shared by the `omni_server` and `omni_local` backends: wire format, history, prompts.

The registry entry modules are `dialogue.omni_server` (vLLM-Omni over HTTP) and `dialogue.omni_local`
(transformers in-process); `dialogue.omni.local_server` is a vLLM-Omni-compatible server for tests and
benchmarks.
"""
