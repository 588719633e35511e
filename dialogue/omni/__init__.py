"""Qwen3-Omni plumbing shared by the `omni_server` and `omni_local` backends: wire format, history, prompts.

The registry entry modules are `liveavatar.dialogue.omni_server` (vLLM-Omni over HTTP) and `liveavatar.dialogue.omni_local`
(transformers in-process); `liveavatar.testing.omni_standin` is a vLLM-Omni-compatible server for tests and
benchmarks.
"""
