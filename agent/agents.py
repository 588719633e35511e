"""An agent is a persona brought to life: its dialogue backend and its avatar generator."""

from __future__ import annotations

from dataclasses import dataclass

from agent.config import Persona
from avatar.base import AvatarGenerator, Underrun
from avatar.registry import AvatarSetup, create_avatar
from dialogue.base import DialogueBackend
from dialogue.registry import DialogueSetup, create_dialogue


@dataclass
class Agent:
    """One persona's running parts."""

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


def build_agent(persona: Persona, size: tuple[int, int], fps: float, audio_rate: int, underrun: Underrun, seed: int = 0) -> Agent:
    """Create the persona's dialogue backend and avatar generator."""
    avatar = create_avatar(
        persona.avatar_backend,
        persona.avatar_options,
        AvatarSetup(persona.portrait, persona.portrait_path, fps=fps, size=size, audio_rate=audio_rate, underrun=underrun, seed=seed),
    )
    dialogue = create_dialogue(
        persona.dialogue_backend,
        persona.dialogue_options,
        DialogueSetup(persona.name, persona.system_prompt, persona.voice, persona.base_dir),
    )
    return Agent(persona, dialogue, avatar)
