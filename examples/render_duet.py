"""Two agents talking to each other, rendered to an MP4 from code (what `liveavatar duet DUET.yaml --out` does).

    python examples/render_duet.py duet.mp4
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from liveavatar.agent import DuetPlan, load_persona, render_duet

HERE = Path(__file__).resolve().parent


async def main(out: str) -> None:
    nova, iris = load_persona(HERE / "nova.yaml"), load_persona(HERE / "iris.yaml")
    plan = DuetPlan(layout="stacked", size=(256, 256), max_turns=2, opening="Say hello to Iris.")
    result = await render_duet(plan, [nova, iris], out)
    for turn in result.turns:
        print(f"{turn.first_frame / plan.fps:5.1f} s  {turn.speaker}: {turn.text}")
    print(f"wrote {out}: {result.seconds:.1f} s of video in {result.wall_seconds:.1f} s")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "duet.mp4"))
