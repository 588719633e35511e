"""LiveAvatar: the streaming audio-driven diffusion avatar (Wan2.2-S2V-14B made causal), re-implemented.

Modules, one job each: config (dataclasses), rope (3-axis RoPE, unbounded positions), cache (per-step KV
rings, sink cache), dit (the causal S2V DiT), audio_encoder and framepack (its conditioning parts),
schedule (4-step flow-matching Euler), stream (the block loop: Rolling RoPE, Adaptive Attention Sink),
history_corrupt (training-time KV-history noise), vae (Wan2.1 VAE via diffusers, streaming decode),
features (wav2vec2 and umT5 via transformers), lora and precision (LoRA merge; bf16/fp8), loader (local
checkpoints), pipeline (one avatar stream), backend (the AvatarGenerator), tiny (the random-weight TEST
config), parity (golden-vector replay), bench (benchmark), tpp/ (Timestep-forcing Pipeline Parallelism: the
generator over D DiT worker processes + a decode worker, its schedule model and benchmark). Importing this
package imports no torch.
"""
