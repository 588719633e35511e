"""Talk to a persona from a WAV file: the file is your voice; the avatar's answers are recorded to an MP4.

    python examples/talk_to_wav.py examples/nova.yaml question.wav answer.mp4
"""

from __future__ import annotations

import asyncio
import sys

from liveavatar.agent import Clock, MetricsLog, converse, load_persona, make_agent
from liveavatar.devices.mp4 import MP4Sink
from liveavatar.devices.sources import WavFileSource


async def main(persona_file: str, wav: str, out: str) -> None:
    async with make_agent(load_persona(persona_file), size=(256, 256)) as agent:
        clock = Clock()
        recorder = MP4Sink(out, agent.avatar.size, agent.avatar.fps, agent.avatar.audio_rate)
        # Plays the WAV as if it were a microphone (and a few seconds of silence after it), then stops.
        conversation = await converse(agent, WavFileSource(clock, wav), [recorder], MetricsLog(), clock)
    for turn in conversation.metrics.turns:
        print(f"{turn.speaker}: {turn.heard_text}  (answered in {turn.response_latency_s:.2f} s)")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
