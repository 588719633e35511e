"""Timestep-forcing Pipeline Parallelism (TPP): the LiveAvatar generator spread over worker processes.

D DiT workers each own a fixed, contiguous share of the denoising steps and those steps' KV rings; a block's
latent (with its encoded audio) travels from worker to worker over torch.distributed point-to-point sends
(gloo on CPU, bound to 127.0.0.1; NCCL on CUDA), and a decode worker turns the clean latent into frames.
While worker 1 runs steps 2-3 of block b, worker 0 already runs steps 0-1 of block b+1, so throughput grows
with D while every step still sees exactly the history it sees in one process: the output is bit-identical.

Modules, one job each: layout (who runs which steps, ranks and roles), messages (the typed messages between
the orchestrator and the workers), wire (fixed-size tensor messages and the process groups), stages (the
compute of one DiT worker / of the decoder), worker (the process entry point: its config, heartbeat, parent
watchdog, loops), pool (spawning, monitoring, fault detection, teardown), runner (the strategy the LiveAvatar
generator is given: blocks in, frames out), schedule_model and onset_model (frames/s, time to first frame and
speech-onset latency predicted from stage costs); the benchmark is `liveavatar bench tpp`. Importing this
package imports no torch.
"""
