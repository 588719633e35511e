"""Orchestration: persona configs, turn-taking, the conversation engine (live, or offline on a frame clock),
duets, metrics and the CLI.

The public API, in a few lines (see examples/talk_to_wav.py and examples/render_duet.py):

    agent = make_agent(load_persona("nova.yaml"))               # a persona brought to life, for live use
    conversation = Conversation(agent, source, sinks, Clock())   # a person talking with it
    result = await render_duet(DuetPlan(max_turns=4), [nova, iris], "duet.mp4")   # two agents, to an MP4
"""

from liveavatar.agent.agents import Agent, build_agent
from liveavatar.agent.chat import converse, make_agent, serve_browser
from liveavatar.agent.clock import Clock, FrameClock
from liveavatar.agent.config import ConfigError, Duet, Persona, load_duet, load_persona
from liveavatar.agent.conversation import Conversation
from liveavatar.agent.duet_plan import DuetPlan
from liveavatar.agent.metrics import MetricsLog, TurnMetrics
from liveavatar.agent.render import RenderResult, TurnRecord, offline_agents, render, render_duet
from liveavatar.agent.replies import Reply, ReplyState

__all__ = [
    "Agent", "Clock", "ConfigError", "Conversation", "Duet", "DuetPlan", "FrameClock", "MetricsLog", "Persona", "RenderResult",
    "Reply", "ReplyState", "TurnMetrics", "TurnRecord", "build_agent", "converse", "load_duet", "load_persona", "make_agent",
    "offline_agents", "render", "render_duet", "serve_browser",
]  # fmt: skip
