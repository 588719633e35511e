"""An agent is a persona brought to life: its dialogue backend and its avatar generator."""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass

from liveavatar.agent.config import Persona
from liveavatar.avatar.base import AvatarGenerator, Underrun
from liveavatar.avatar.registry import AvatarSetup, create_avatar
from liveavatar.dialogue.base import DialogueBackend
from liveavatar.dialogue.registry import DialogueSetup, create_dialogue
from liveavatar.media.plugins import SharedModels


@dataclass(eq=False)
class Agent:
    """One persona's running parts; two agents are never equal, even when they play the same persona."""

    persona: Persona
    dialogue: DialogueBackend
    avatar: AvatarGenerator

    @property
    def name(self) -> str:
        """The persona's display name."""
        return self.persona.name

    async def aclose(self) -> None:
        """Release both parts."""
        await self.dialogue.aclose()
        await self.avatar.aclose()

    async def __aenter__(self) -> Agent:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def build_agent(persona: Persona, size: tuple[int, int], fps: float, audio_rate: int, underrun: Underrun, seed: int = 0,
                shared: SharedModels | None = None, executor: Executor | None = None) -> Agent:  # fmt: skip
    """Create the persona's dialogue backend and avatar generator (over `shared` models, running work on `executor`)."""
    avatar = create_avatar(
        persona.avatar_backend,
        persona.avatar_options,
        AvatarSetup(persona.portrait, persona.portrait_path, fps=fps, size=size, audio_rate=audio_rate, underrun=underrun, seed=seed,
                    shared=shared),  # fmt: skip
    )
    dialogue = create_dialogue(
        persona.dialogue_backend,
        persona.dialogue_options,
        DialogueSetup(persona.name, persona.system_prompt, persona.voice, persona.base_dir, shared=shared, executor=executor),
    )
    return Agent(persona, dialogue, avatar)
