"""The real vLLM-Omni server as a test component: its own cached environment, our CPU platform plugin,
a deploy config, a tiny random-weight Qwen3-Omni checkpoint that fits vLLM, and a process-group runner.

Test-only: the library never imports this package (tests and `liveavatar bench omni-real` do).
"""
