"""A live conversation between a person and one agent (or two agents talking, whom the person may interrupt).

Two named tasks do the work, as in LiveKit's avatar runner: `_listen` feeds the microphone through
the VAD into the TurnTaker and acts on its events; `_present` pulls the avatar's frames at real
time and writes them to every sink. Each reply is a generation (see agent.replies.Reply): an
interrupt cancels its dialogue stream, clears the avatar, flushes every sink, and from then on any
frame still stamped with it is silenced before it reaches a sink.

With two agents and a `LiveDuetPlan`, the agents take turns by themselves (each one's speech as heard is
the other's next turn) and their frames are composed side by side; when the person speaks over an
agent, that agent pauses, and if the person really took the floor, it answers the person and the duet
goes on from there.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from agent.agents import Agent
from agent.clock import Clock
from agent.compose import Compositor
from agent.metrics import MetricsLog, TurnMetrics
from agent.replies import Reply
from agent.turn_options import TurnOptions
from agent.turns import (InterruptAgent, PauseAgent, ResumeAgent, TurnEvent, TurnTaker, UserPaused, UserResumed,
                         UserTurnEnded, UserTurnStarted)  # fmt: skip
from devices.sink import FrameSink
from devices.sources import AudioSource
from devices.vad import SAMPLE_RATE, WINDOW, SileroVAD
from dialogue.base import ReplyEvent, TextDelta, Transcript, UserTurn
from media import AudioChunk, AVFrame, StreamResampler

PRE_ROLL_S = 0.3  # audio kept before the VAD's onset (it detects speech a little late)
POST_ROLL_S = 0.15  # and after the last speech window
HISTORY_S = 120.0  # microphone audio kept for turn extraction (longer turns are cut to this)
DEAD_GENERATIONS_KEPT = 64
PLAN_AHEAD_S = 0.015  # a frame is requested this long before it is due (rendering takes a few ms)

EventCallback = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class LiveDuetPlan:
    """How two agents keep talking on their own: the first turn, the pause between turns, when to stop."""

    opening: str | None = None  # what the first agent hears first (text)
    max_turns: int = 12  # agent turns in all, the person's interruptions not counted
    turn_gap_s: float = 0.4  # silence between one agent's last word and the other's first
    lead_in_s: float = 0.8  # before the first turn


class _MicHistory:
    """The last HISTORY_S seconds of 16 kHz microphone audio, addressable by absolute sample index."""

    def __init__(self) -> None:
        self._ring = np.zeros(int(HISTORY_S * SAMPLE_RATE), np.float32)
        self.written = 0

    def write(self, pcm: np.ndarray) -> None:
        n = len(self._ring)
        for start in range(0, len(pcm), n):
            part = pcm[start : start + n]
            at = (self.written) % n
            first = min(len(part), n - at)
            self._ring[at : at + first] = part[:first]
            self._ring[: len(part) - first] = part[first:]
            self.written += len(part)

    def read(self, start: int, stop: int) -> np.ndarray:
        start = max(start, self.written - len(self._ring), 0)
        stop = min(stop, self.written)
        if stop <= start:
            return np.zeros(0, np.float32)
        idx = np.arange(start, stop) % len(self._ring)
        return self._ring[idx].copy()


class Conversation:
    """A person (through `source` and `sinks`) talking with `agent` — or with two agents talking to each
    other when `duet` is given — until cancelled or `run(until)`."""

    def __init__(
        self,
        agent: Agent | Sequence[Agent],
        source: AudioSource,
        sinks: list[FrameSink],
        clock: Clock,
        options: TurnOptions | None = None,
        metrics: MetricsLog | None = None,
        on_event: EventCallback | None = None,
        preempt: bool = True,
        vad: SileroVAD | None = None,
        camera: Callable[[], np.ndarray | None] | None = None,
        duet: LiveDuetPlan | None = None,
    ) -> None:
        self.agents = [agent] if isinstance(agent, Agent) else list(agent)
        if duet is not None and len(self.agents) != 2:
            raise ValueError(f"a live duet needs two agents, got {len(self.agents)}")
        self.duet = duet
        self.agent = self.agents[0]  # the one who answers the person: the last one to speak
        self.source = source
        self.sinks = sinks
        self.clock = clock
        self.options = options or self.agents[0].persona.turn_taking
        self.metrics = metrics or MetricsLog()
        self.on_event = on_event or (lambda event: None)
        self.preempt = preempt
        self.camera = camera or (lambda: None)
        self.taker = TurnTaker(self.options, can_pause=all(a.avatar.can_pause for a in self.agents))
        self._compositor = None if len(self.agents) == 1 else Compositor(
            self.agents[0].avatar.size, len(self.agents), names=[a.name for a in self.agents])  # fmt: skip
        self._owner: dict[int, Agent] = {}  # generation -> the agent speaking it
        self._voice: dict[int, list[np.ndarray]] = {}  # duet: each reply's audio as heard, for the other agent
        self._agent_turns = 0
        self._next_turn: asyncio.Task | None = None
        self._vad = vad or SileroVAD()
        self._mic = _MicHistory()
        self._resampler: StreamResampler | None = None
        self._source_t0: float | None = None
        self._generation = 0
        self._turns = 0
        self._prepared: tuple[Reply, tuple[float, float]] | None = None
        self._current: Reply | None = None  # released: playing or about to
        self._deciding: set[asyncio.Task] = set()
        self._dead: deque[int] = deque(maxlen=DEAD_GENERATIONS_KEPT)
        self._played: dict[int, int] = {}
        self._open_metrics: dict[int, tuple[Reply, TurnMetrics]] = {}
        self._voiced = False
        self._holding = False  # the avatar is paused: a frame planned just before the pause is silenced too
        self._unheard_s = 0.0  # speech of the paused reply that never reached the listener: replayed on resume
        self._last_generation: int | None = None
        self.frames_presented = 0
        self.samples_presented = 0

    # ------------------------------------------------------------------------------ lifecycle

    async def run(self, until: float | None = None) -> None:
        """Listen and present until clock time `until` (None: until cancelled or the source ends)."""
        listen = asyncio.create_task(self._listen(), name="conversation-listen")
        present = asyncio.create_task(self._present(), name="conversation-present")
        tasks = {listen, present}
        if self.duet is not None:
            opening = UserTurn(text=self.duet.opening) if self.duet.opening else UserTurn()
            self._schedule_agent_turn(self.agents[0], opening, self.duet.lead_in_s)
        try:
            if until is None:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            else:
                timer = asyncio.create_task(self.clock.sleep_until(until), name="conversation-until")
                done, _ = await asyncio.wait(tasks | {timer}, return_when=asyncio.FIRST_COMPLETED)
                timer.cancel()
            for task in done & tasks:
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            await self._teardown(tasks)

    async def _teardown(self, tasks: set[asyncio.Task]) -> None:
        """Symmetric shutdown: replies first (their streams close), then the two tasks."""
        for task in list(self._deciding) + ([self._next_turn] if self._next_turn else []):
            task.cancel()
        replies = [r for r in (self._current, self._prepared[0] if self._prepared else None) if r is not None]
        for reply in replies:
            await reply.cancel()
        for task in tasks | self._deciding:
            task.cancel()
        for task in tasks | self._deciding:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for reply, metrics in list(self._open_metrics.values()):
            self._finish_metrics(reply, metrics)

    # ------------------------------------------------------------------------------ listening

    async def _listen(self) -> None:
        async for chunk in self.source.chunks():
            if self._source_t0 is None:
                self._source_t0 = chunk.pts
            pcm = self._to_16k(chunk)
            self._mic.write(pcm)
            for window in self._vad.feed(pcm):
                end = self._source_t0 + window.end_s
                for event in self.taker.vad(end - WINDOW / SAMPLE_RATE, end, window.probability):
                    await self._on_turn_event(event)

    def _to_16k(self, chunk: AudioChunk) -> np.ndarray:
        if chunk.rate == SAMPLE_RATE:
            return chunk.pcm
        if self._resampler is None or self._resampler.rate_in != chunk.rate:
            self._resampler = StreamResampler(chunk.rate, SAMPLE_RATE)
        return self._resampler.process(chunk.pcm)

    def _user_turn(self, onset: float, speech_end: float) -> UserTurn:
        """The user's speech from `onset` to `speech_end` (with a little margin) and the camera's view."""
        t0 = self._source_t0 or 0.0
        start = int((onset - PRE_ROLL_S - t0) * SAMPLE_RATE)
        stop = int((speech_end + POST_ROLL_S - t0) * SAMPLE_RATE)
        audio = AudioChunk(self._mic.read(start, stop), SAMPLE_RATE, pts=max(onset - PRE_ROLL_S, t0))
        return UserTurn(audio=audio, image=self.camera())

    async def _on_turn_event(self, event: TurnEvent) -> None:
        if isinstance(event, UserTurnStarted):
            if self._next_turn is not None:
                self._next_turn.cancel()  # the person takes the floor before the next agent does
            self._emit(type="state", state="user_speaking")
        elif isinstance(event, UserPaused):
            if self.preempt:
                await self._drop_prepared()
                reply = self._new_reply(self._user_turn(event.onset, event.speech_end))
                self._prepared = (reply, (event.onset, event.speech_end))
        elif isinstance(event, UserResumed):
            await self._drop_prepared()
        elif isinstance(event, UserTurnEnded):
            await self._on_turn_ended(event)
        elif isinstance(event, PauseAgent):
            self._holding = True
            for agent in self.agents:
                agent.avatar.pause()
            self._unheard_s = await self._flush_sinks()  # played again on resume, so nothing is lost
            self._unhear(self._unheard_s)
            self._note_barge_in(event.onset)
            self._emit(type="state", state="paused")
        elif isinstance(event, ResumeAgent):
            self._holding = False
            for agent in self.agents:
                agent.avatar.resume(self._unheard_s)
            self._unheard_s = 0.0
            if self._current is not None and self._current.generation in self._open_metrics:
                self._open_metrics[self._current.generation][1].resumed = True
            self._emit(type="state", state="speaking")
        elif isinstance(event, InterruptAgent):
            if event.onset is not None:
                self._unhear(await self._flush_sinks())
                self._note_barge_in(event.onset)
            await self._interrupt_current()

    async def _on_turn_events(self, events: list[TurnEvent]) -> None:
        for event in events:
            await self._on_turn_event(event)

    async def _on_turn_ended(self, event: UserTurnEnded) -> None:
        prepared, self._prepared = self._prepared, None
        if prepared is not None and prepared[1] == (event.onset, event.speech_end):
            reply, early = prepared[0], True
        else:
            if prepared is not None:
                await self._discard(prepared[0])
            reply, early = self._new_reply(self._user_turn(event.onset, event.speech_end)), False
        self._turns += 1
        speaker = self._owner[reply.generation].name
        metrics = TurnMetrics(self._turns, reply.generation, event.onset, event.speech_end, event.t, prepared_early=early, speaker=speaker)
        self._open_metrics[reply.generation] = (reply, metrics)
        self._emit(type="state", state="thinking")
        if event.over_agent:
            task = asyncio.create_task(self._decide(reply), name=f"decide-{reply.generation}")
            self._deciding.add(task)
            task.add_done_callback(self._deciding.discard)
        else:
            await self._go(reply)

    async def _decide(self, reply: Reply) -> None:
        """Pause-then-decide: words in the new reply make the barge-in real; none resume the old reply."""
        if await reply.wait_decided():
            for event in self.taker.commit_turn(self.clock.now()):
                await self._on_turn_event(event)
            await self._go(reply)
        else:
            await self._discard(reply)
            self._open_metrics.pop(reply.generation, None)
            for event in self.taker.reject_turn(self.clock.now()):
                await self._on_turn_event(event)

    async def _go(self, reply: Reply) -> None:
        """Make `reply` the one the avatar speaks; whatever it was speaking is interrupted."""
        if self._current is not None and self._current is not reply:
            await self._interrupt_current()
        for agent in self.agents:
            if agent.avatar.can_pause:
                agent.avatar.resume()
        self._holding = False
        self._current = reply
        self.agent = self._owner[reply.generation]
        reply.release()
        if reply.text:
            self._emit(type="transcript", role="agent", text=reply.text, generation=reply.generation, speaker=self.agent.name)
        watcher = asyncio.create_task(self._close_if_silent(reply), name=f"silent-{reply.generation}")
        self._deciding.add(watcher)
        watcher.add_done_callback(self._deciding.discard)

    async def _close_if_silent(self, reply: Reply) -> None:
        """A reply that ends without speech (nothing to say, or an error) never shows on a frame: close it here."""
        await reply.finished.wait()
        if not reply.spoke and reply.generation in self._open_metrics:
            self._finish_metrics(*self._open_metrics[reply.generation])
            if self._current is reply:
                self._current = None
            self._emit(type="state", state="listening")

    async def _interrupt_current(self) -> None:
        reply, self._current = self._current, None
        if reply is None:
            return
        self._dead.append(reply.generation)
        await reply.cancel()
        reply.avatar.clear()
        for agent in self.agents:
            if agent.avatar.can_pause:
                agent.avatar.resume()
        await self._flush_sinks()
        heard = reply.heard_text(self._played.get(reply.generation, 0))
        reply.dialogue.record_played(heard, reply.turn)
        self._voice.pop(reply.generation, None)
        if reply.generation in self._open_metrics:
            _, metrics = self._open_metrics[reply.generation]
            metrics.interrupted = True
            self._finish_metrics(reply, metrics, heard)
        self._emit(type="interrupted", generation=reply.generation, heard=heard)

    def _new_reply(self, turn: UserTurn, agent: Agent | None = None) -> Reply:
        """A new generation answering `turn`, spoken by `agent` (default: whoever answers the person)."""
        agent = agent or self.agent
        self._generation += 1
        self._owner[self._generation] = agent
        if len(self._owner) > DEAD_GENERATIONS_KEPT:
            del self._owner[min(self._owner)]
        return Reply(self._generation, turn, agent.dialogue, agent.avatar, self.clock.now, self._on_reply_event).start()

    async def _drop_prepared(self) -> None:
        prepared, self._prepared = self._prepared, None
        if prepared is not None:
            await self._discard(prepared[0])

    async def _discard(self, reply: Reply) -> None:
        """Cancel a reply that never reached the avatar, and take it back out of the history."""
        await reply.cancel()
        self._dead.append(reply.generation)
        reply.dialogue.discard_turn(reply.turn)

    def _on_reply_event(self, event: ReplyEvent, reply: Reply) -> None:
        if isinstance(event, Transcript):
            self._emit(type="transcript", role="user", text=event.text, generation=reply.generation)
            if self._prepared is not None and self._prepared[0] is reply and event.text.rstrip().endswith("?"):
                events = self.taker.turn_is_a_question(self.clock.now(), *self._prepared[1])
                if events:
                    task = asyncio.create_task(self._on_turn_events(events), name=f"question-{reply.generation}")
                    self._deciding.add(task)
                    task.add_done_callback(self._deciding.discard)
        elif isinstance(event, TextDelta) and reply.released:
            speaker = self._owner[reply.generation].name if reply.generation in self._owner else ""
            self._emit(type="transcript", role="agent", text=event.text, generation=reply.generation, delta=True, speaker=speaker)

    # ------------------------------------------------------------------------------ presenting

    async def _present(self) -> None:
        fps = self.agents[0].avatar.fps
        start = self.clock.now()
        streams = [a.avatar.frames() for a in self.agents]
        shown = 0  # frames presented by this conversation (the avatar's own index may have started earlier)
        while True:
            # Ask for each frame shortly before it is due, so speech that arrives meanwhile makes it in.
            await self.clock.sleep_until(start + shown / fps - PLAN_AHEAD_S)
            frames = list(await asyncio.gather(*(anext(s) for s in streams)))
            frame = frames[0] if self._compositor is None else self._compositor.compose(frames)
            if self.duet is not None:
                self._keep_voice(frames)
            await self.clock.sleep_until(start + shown / fps)
            shown += 1
            if frame.generation is not None and (self._holding or frame.generation in self._dead):
                if self._holding and frame.audio.any():  # planned just before the pause: its speech comes again on resume
                    self._unheard_s += len(frame.audio) / frame.audio_rate
                frame = replace(frame, audio=np.zeros_like(frame.audio), generation=None)
            for sink in self.sinks:
                await sink.write(frame)
            self.frames_presented += 1
            self.samples_presented += len(frame.audio)
            await self._after_present(frame)

    async def _after_present(self, frame: AVFrame) -> None:
        now = self.clock.now()
        g = frame.generation
        if g is not None:
            self._played[g] = self._played.get(g, 0) + len(frame.audio)
            if g in self._open_metrics:
                reply, metrics = self._open_metrics[g]
                if metrics.first_voiced_frame is None and frame.audio.any():
                    metrics.first_voiced_frame = now
                    metrics.response_latency_s = now - metrics.user_speech_end
                    self._emit(type="state", state="speaking")
        if self._last_generation is not None and g != self._last_generation and not self._holding:
            ended = self._open_metrics.get(self._last_generation)
            if ended is not None and ended[0].finished.is_set():
                self._finish_metrics(ended[0], ended[1])
                if self._current is ended[0]:
                    self._current = None
                self._emit(type="state", state="listening")
                self._agent_finished(ended[0])
        self._last_generation = g
        voiced = g is not None
        if voiced != self._voiced:
            self._voiced = voiced
            for event in self.taker.agent_speaking(now, voiced):
                await self._on_turn_event(event)

    # ------------------------------------------------------------------------------ two agents

    def _keep_voice(self, frames: list[AVFrame]) -> None:
        """Collect each reply's audio from its own agent's frames (the other agent's next turn)."""
        for frame in frames:
            g = frame.generation
            if g is not None and g not in self._dead and not self._holding:
                self._voice.setdefault(g, []).append(frame.audio)

    def _agent_finished(self, reply: Reply) -> None:
        """A reply played to its end: in a duet, the other agent answers what it heard."""
        voice = self._voice.pop(reply.generation, [])
        if self.duet is None or not voice:
            return
        speaker = self._owner[reply.generation]
        other = self.agents[1 - self.agents.index(speaker)]
        heard = AudioChunk(np.concatenate(voice), speaker.avatar.audio_rate)
        self._schedule_agent_turn(other, UserTurn(audio=heard, text=reply.text or None), self.duet.turn_gap_s)

    def _schedule_agent_turn(self, agent: Agent, turn: UserTurn, after_s: float) -> None:
        assert self.duet is not None
        if self._agent_turns >= self.duet.max_turns:
            return
        self._next_turn = asyncio.create_task(self._agent_turn(agent, turn, self.clock.now() + after_s), name=f"agent-turn-{agent.name}")

    async def _agent_turn(self, agent: Agent, turn: UserTurn, at: float) -> None:
        await self.clock.sleep_until(at)
        if self._current is not None or self.taker.floor.value in ("user", "paused"):
            return  # the person is speaking, or being answered: the duet resumes after that
        self._agent_turns += 1
        reply = self._new_reply(turn, agent)
        now = self.clock.now()
        self._open_metrics[reply.generation] = (reply, TurnMetrics(self._turns, reply.generation, now, now, now, speaker=agent.name,
                                                                       heard_from="agent" if turn.audio is not None else "opening"))  # fmt: skip
        await self._go(reply)

    async def _flush_sinks(self) -> float:
        """Flush every sink; returns the most audio any of them dropped unheard, in seconds."""
        dropped = 0.0
        for sink in self.sinks:
            dropped = max(dropped, await sink.flush())
        return dropped

    def _unhear(self, seconds: float) -> None:
        """The last `seconds` the current reply sent to the sinks were dropped there: they do not count as heard."""
        if self._current is not None and seconds > 0:
            g = self._current.generation
            self._played[g] = max(0, self._played.get(g, 0) - round(seconds * self.agents[0].avatar.audio_rate))

    # ------------------------------------------------------------------------------ bookkeeping

    def _note_barge_in(self, onset: float) -> None:
        if self._current is not None and self._current.generation in self._open_metrics:
            metrics = self._open_metrics[self._current.generation][1]
            if metrics.barge_in_latency_s is None and metrics.first_voiced_frame is not None:
                metrics.barge_in_latency_s = self.clock.now() - onset

    def _finish_metrics(self, reply: Reply, metrics: TurnMetrics, heard: str | None = None) -> None:
        self._open_metrics.pop(reply.generation, None)
        self._played.pop(reply.generation, None)
        t = reply.times
        metrics.transcript = reply.transcript
        metrics.reply_text = reply.text
        metrics.heard_text = reply.text if heard is None else heard
        metrics.error = reply.error
        metrics.asr_s = None if t.transcript is None else t.transcript - metrics.turn_end
        metrics.llm_first_text_s = None if t.first_text is None else t.first_text - metrics.turn_end
        metrics.tts_first_audio_s = None if t.first_audio is None else t.first_audio - metrics.turn_end
        self.metrics.add(metrics)
        if reply.error:
            self._emit(type="error", message=reply.error)
        self._emit(type="metrics", **metrics.as_dict())

    def _emit(self, **event: Any) -> None:
        self.on_event(event)
