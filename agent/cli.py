"""The `liveavatar` command: chat, serve, duet, check, bench."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from liveavatar.agent import arguments as value
from liveavatar.agent.config import ConfigError, load_any, load_duet, load_persona
from liveavatar.agent.printing import line, say

EXIT_CONFIG = 2
EXIT_DEVICE = 3


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        try:
            value.check_usage(args)
        except value.UsageError as exc:
            args.parser.error(f"argument {exc.flag}: {exc}")
    except SystemExit as exc:  # a usage error (argparse printed it) or --help
        return exc.code if isinstance(exc.code, int) else 2
    console = Console(stderr=True)
    _one_opencv_thread()
    try:
        return int(args.run(args, console) or 0)
    except ConfigError as exc:
        for problem in exc.problems:
            say(console, ("error:", "bold red"), " ", problem)
        return EXIT_CONFIG
    except _device_errors() as exc:  # evaluated only when something was raised: the imports stay lazy
        say(console, ("error:", "bold red"), f" {exc}")
        return EXIT_DEVICE
    except KeyboardInterrupt:
        say(console, ("interrupted", "yellow"))
        return 130


def _one_opencv_thread() -> None:
    """OpenCV works on one thread: splitting our small images (a 512² frame's remap and colour conversion) over its
    pool costs 4.2-5.5 ms of CPU a frame against 1.9 ms on one thread, for no less wall time; a server's sessions,
    not one frame's rows, are what run in parallel."""
    import cv2

    cv2.setNumThreads(1)


def _device_errors() -> tuple[type[Exception], ...]:
    """Errors of devices and the page that are one line for the user (a sound card missing, a port taken)."""
    from liveavatar.devices.browser.server import PageError
    from liveavatar.devices.local import DeviceError

    return DeviceError, PageError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="liveavatar", description="Real-time talking-avatar agents.")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    duet = sub.add_parser("duet", help="render two agents talking to each other to an MP4")
    duet.add_argument("config", type=Path, help="duet YAML (two persona files under `agents:`)")
    duet.add_argument("--out", type=value.mp4_file, default=None, help="MP4 file to write (default: duet.mp4)")
    duet.add_argument("--max-seconds", type=value.positive_seconds, default=None, help="stop the video at this length (seconds)")
    duet.add_argument("--max-turns", type=value.whole_at_least(1), default=None, help="stop after this many turns")
    duet.add_argument("--seed", type=int, default=0, help="seed for blinks and head motion (default 0)")
    duet.add_argument("--dit-workers", type=value.whole_at_least(0), default=None, metavar="D",
                      help="liveavatar avatars: D DiT worker processes (1, 2 or 4; 0 = in-process)")
    live = duet.add_mutually_exclusive_group()
    live.add_argument("--browser", action="store_true", help="play the duet live in a page; speak to barge in on either agent")
    live.add_argument("--wav", type=value.audio_file, help="play the duet live with this WAV file as your voice (with --out: record it)")
    _page_options(duet)
    duet.set_defaults(run=_run_duet, command="duet", parser=duet)

    chat = sub.add_parser("chat", help="talk with one persona, live")
    chat.add_argument("persona", type=Path, help="persona YAML")
    where = chat.add_mutually_exclusive_group()
    where.add_argument("--browser", action="store_true", help="serve a page with mic, camera and the avatar (recommended)")
    where.add_argument("--wav", type=value.audio_file, help="use this WAV file as the microphone (headless)")
    _page_options(chat)
    chat.add_argument("--out", type=value.mp4_file, default=None, help="with --wav: also record the avatar to this MP4")
    chat.add_argument("--headphones", action="store_true", help="local devices: no echo guard (you can interrupt the avatar)")
    chat.add_argument("--size", type=value.frame_pixels, default=512, help="avatar frame size in pixels, even (default 512)")
    chat.add_argument("--metrics", type=value.output_file, default=None, help="append per-turn latency figures to this JSON-lines file")
    chat.add_argument("--dit-workers", type=value.whole_at_least(0), default=None, metavar="D",
                      help="liveavatar avatar: D DiT worker processes (1, 2 or 4; 0 = in-process)")
    chat.set_defaults(run=_run_chat, command="chat", parser=chat)

    serve = sub.add_parser("serve", help="serve the page to several people at once: each browser tab its own conversation")
    serve.add_argument("personas", type=Path, nargs="+", help="persona YAML files (the page lets each person pick one)")
    _page_options(serve, when="")
    serve.add_argument("--max-sessions", type=value.whole_at_least(1), default=4, metavar="N",
                       help="conversations at once (default 4); the next person is told that all seats are taken")
    serve.add_argument("--size", type=value.frame_pixels, default=512, help="avatar frame size in pixels, even (default 512)")
    serve.add_argument("--metrics", type=value.output_file, default=None,
                       help="append per-turn latency figures (with the session id) to this JSON-lines file")
    serve.set_defaults(run=_run_serve, command="serve", parser=serve)

    check = sub.add_parser("check", help="validate persona or duet YAML files without running them")
    check.add_argument("files", type=Path, nargs="+", help="persona or duet YAML files")
    check.set_defaults(run=_run_check, command="check", parser=check)

    bench = sub.add_parser("bench", help="print benchmark figures as JSON lines")
    bench.add_argument("what", nargs="*", default=["duet", "portrait"],
                       help="any of: duet, latency, eot, eot-load, eot-sweep, soak, omni, omni-real, liveavatar, liveavatar-soak, tpp, gpu, "
                            "serve, portrait (default: duet portrait)")
    bench.add_argument("--frames", type=value.whole_at_least(1), default=500, help="portrait frames to time (default 500)")
    bench.add_argument("--blocks", type=value.whole_at_least(1), default=None,
                       help="liveavatar-soak: blocks to stream (default 20834 = 10,000 s; a shorter soak ends at the same RoPE positions)")
    bench.add_argument("--device", default="cuda", help="gpu: cuda (default), cuda:N, or cpu")
    bench.add_argument("--scale", choices=("full", "small"), default=None,
                       help="gpu: full = the real model's shapes (default on CUDA), small = reduced shapes (default on CPU)")
    bench.set_defaults(run=_run_bench, command="bench", parser=bench)
    return parser


def _page_options(parser: argparse.ArgumentParser, when: str = "with --browser: ") -> None:
    """The options of the browser page (used with --browser, or always by serve)."""
    parser.add_argument("--host", default="127.0.0.1", help=f"{when}address to serve the page on (default 127.0.0.1; others need --token)")
    parser.add_argument("--port", type=value.port_number, default=8765, help=f"{when}port for the page (default 8765)")
    parser.add_argument("--token", type=value.secret, default=None, help=f"{when}secret the page must present (required off 127.0.0.1)")
    parser.add_argument("--no-open", action="store_true", help=f"{when}do not open the page in a browser")
    parser.add_argument("--transport", choices=("webrtc", "websocket"), default="webrtc",
                        help=f"{when}how video and voice reach the page: webrtc (default: VP8 and Opus over UDP) "
                             "or websocket (JPEG and PCM over the page's websocket: for localhost; no echo cancellation)")
    parser.add_argument("--ice-server", action="append", type=value.ice_server, default=[], metavar="URL",
                        help=f"{when}a STUN or TURN server for pages behind NAT (webrtc; repeatable), e.g. "
                             "stun:stun.example.com:3478 or turn:USER:PASSWORD@turn.example.com:3478; none by default")
    parser.add_argument("--video-kbps", type=value.whole_at_least(100), default=500, metavar="KBPS",
                        help=f"{when}the avatar video's ceiling in kbit/s (webrtc; default 500: the 512² portrait at 45 dB "
                             "PSNR); a slower link gets less, as the browser estimates it")


def _announce_page(console: Console, open_it: bool):  # noqa: ANN202 - the server's ready callback
    """Say where the page is, and open it unless asked not to."""

    def ready(server) -> None:  # noqa: ANN001 - a BrowserServer
        say(console, ("open", "green"), f" {server.url}  (Ctrl-C to stop)")
        if open_it:
            import webbrowser

            webbrowser.open(server.url)

    return ready


def _run_serve(args: argparse.Namespace, console: Console) -> int:
    from liveavatar.agent.memory import settle_allocator
    from liveavatar.agent.serve import ServeOptions, serve

    settle_allocator()  # before any thread takes a heap of its own

    problems, personas = [], []
    for path in args.personas:
        try:
            personas.append(load_persona(path, check_face=True))
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    options = ServeOptions(args.host, args.port, args.token, args.max_sessions, args.transport, tuple(args.ice_server),
                           args.video_kbps * 1000, (args.size, args.size))  # fmt: skip
    show = _event_printer(console)

    def on_event(session_id: str, event: dict) -> None:
        if event.get("type") == "session":
            say(console, (f"{session_id} ({event['persona']}): conversation {event['state']}", "dim"))
        else:
            show(event, prefix=f"{session_id} ")

    loading = console.status(line(f"loading {', '.join(p.name for p in personas)}…"))
    loading.start()
    announce = _announce_page(console, not args.no_open)

    def ready(server) -> None:  # noqa: ANN001 - a BrowserServer
        loading.stop()
        announce(server)
        say(console, (f"up to {args.max_sessions} conversations at once, media over {args.transport}", "dim"))

    try:
        asyncio.run(serve(personas, options, on_event, ready, args.metrics))
    finally:
        loading.stop()
    return 0


def _run_chat(args: argparse.Namespace, console: Console) -> int:
    from liveavatar.agent.chat import make_agent
    from liveavatar.agent.metrics import MetricsLog

    persona = load_persona(args.persona, check_face=True)
    if args.dit_workers is not None:
        persona = _with_dit_workers([persona], args.dit_workers)[0]
    if not args.browser and not args.wav and not args.headphones and persona.turn_taking.echo_guard_s == 0:
        # Speakers without echo cancellation: the avatar would hear itself and stop. Guard its speech.
        persona = persona.model_copy(update={"turn_taking": persona.turn_taking.model_copy(update={"echo_guard_s": 1e9})})
    metrics = MetricsLog(args.metrics)
    show = _event_printer(console)
    with console.status(line(f"loading {persona.name}…")):
        agent = make_agent(persona, (args.size, args.size))
    try:
        asyncio.run(_chat(args, agent, metrics, show, console))
    finally:
        metrics.close()
    return 0


async def _chat(args: argparse.Namespace, agent, metrics, show, console: Console) -> None:  # noqa: ANN001 - Agent, MetricsLog, printer
    """The chat on one event loop, which then releases the agent (its tasks and any TPP worker processes live on it)."""
    from liveavatar.agent.chat import converse, serve_browser
    from liveavatar.agent.clock import Clock

    try:
        if args.browser:
            await serve_browser(agent, args.host, args.port, args.token, metrics, show, _announce_page(console, not args.no_open),
                                transport=args.transport, ice_servers=tuple(args.ice_server), video_bitrate=args.video_kbps * 1000)  # fmt: skip
        elif args.wav:
            from liveavatar.devices.mp4 import MP4Sink
            from liveavatar.devices.sources import WavFileSource

            clock = Clock()
            try:
                source = WavFileSource(clock, args.wav)
            except ValueError as exc:
                raise ConfigError([f"--wav: {exc}"]) from None
            sinks = [MP4Sink(args.out, agent.avatar.size, agent.avatar.fps, agent.avatar.audio_rate)] if args.out else []
            conversation = await converse(agent, source, sinks, metrics, clock, on_event=show)
            if args.out:
                say(console, ("recorded", "green"), f" {args.out}: {conversation.frames_presented / agent.avatar.fps:.2f} s")
        else:
            await _local_chat(agent, metrics, show)
    finally:
        await agent.aclose()


async def _local_chat(agent, metrics, show) -> None:  # noqa: ANN001
    from liveavatar.agent.chat import converse
    from liveavatar.agent.clock import Clock
    from liveavatar.devices.local import MicrophoneSource, SpeakerSink, WindowSink

    clock = Clock()
    source = MicrophoneSource(clock)
    sinks = [SpeakerSink(agent.avatar.audio_rate), WindowSink(agent.name)]
    await converse(agent, source, sinks, metrics, clock, on_event=show)


def _event_printer(console: Console):  # noqa: ANN202
    """Prints the conversation as it goes: who said what, and each turn's latency."""

    def show(event: dict, prefix: str = "") -> None:
        kind = event.get("type")
        if kind == "transcript":
            who = ("you", "cyan") if event["role"] == "user" else (str(event.get("speaker") or "avatar"), "yellow")
            say(console, prefix, who, f": {'…' if event.get('delta') else ''}{event['text'].strip()}")
        elif kind == "interrupted":
            say(console, prefix, ("interrupted", "magenta"), f" (heard: {event['heard']!r})")
        elif kind == "metrics" and event.get("response_latency_s") is not None:
            barge = event.get("barge_in_latency_s")
            heard = {"user": "you", "agent": "the other agent", "opening": "the opening"}.get(event.get("heard_from"), "you")
            say(console, prefix, (f"{event.get('speaker') or 'avatar'} answered {heard}: response {event['response_latency_s']:.2f} s"
                                  + (f", barge-in {barge:.2f} s" if barge is not None else ""), "dim"))  # fmt: skip
        elif kind == "error":
            say(console, prefix, ("error:", "bold red"), f" {event['message']}")

    return show


def _live_duet(args: argparse.Namespace, plan, personas, console: Console) -> int:  # noqa: ANN001 - a DuetPlan, Personas
    """The duet played live (real time): the agents talk on their own; the person can barge in on either."""
    from liveavatar.agent.chat import make_agent
    from liveavatar.agent.metrics import MetricsLog

    with console.status(line("loading the agents…")):
        agents = [make_agent(p, plan.size, plan.fps, plan.audio_rate) for p in personas]
    asyncio.run(_duet_live(args, plan, agents, MetricsLog(), console))
    return 0


async def _duet_live(args: argparse.Namespace, plan, agents, metrics, console: Console) -> None:  # noqa: ANN001 - DuetPlan, Agents, MetricsLog
    """The live duet (in the page, or heard from a WAV) on one event loop, which then releases the agents."""
    from liveavatar.agent.chat import converse, serve_browser
    from liveavatar.agent.clock import Clock
    from liveavatar.agent.presenter import picture_size

    show = _event_printer(console)
    try:
        if args.browser:
            await serve_browser(agents, args.host, args.port, args.token, metrics, show, _announce_page(console, not args.no_open),
                                duet=plan, transport=args.transport, ice_servers=tuple(args.ice_server),
                                video_bitrate=args.video_kbps * 1000)  # fmt: skip
            return
        from liveavatar.devices.mp4 import MP4Sink
        from liveavatar.devices.sources import WavFileSource

        clock = Clock()
        try:
            source = WavFileSource(clock, args.wav, tail_s=plan.max_seconds)
        except ValueError as exc:
            raise ConfigError([f"--wav: {exc}"]) from None
        sinks = [MP4Sink(args.out, picture_size(agents, plan), plan.fps, plan.audio_rate)] if args.out else []
        conversation = await converse(agents, source, sinks, metrics, clock, until=plan.max_seconds, on_event=show, duet=plan)
        recorded = f", recorded {args.out}: {conversation.presenter.frames_presented / plan.fps:.2f} s" if args.out else ""
        say(console, ("done", "green"), f": {metrics.count} turns{recorded}")
    finally:
        for agent in agents:
            await agent.aclose()


def _with_dit_workers(personas: list, workers: int) -> list:  # noqa: ANN001 - Persona objects
    """The personas with `dit_workers` set on their liveavatar avatars; an error if none has one."""
    from pydantic import ValidationError

    from liveavatar.avatar.liveavatar.backend import with_dit_workers

    if not any(p.avatar_backend == "liveavatar" for p in personas):
        raise ConfigError([f"--dit-workers: no persona uses the liveavatar avatar backend ({', '.join(str(p.source) for p in personas)})"])
    out = []
    for persona in personas:
        if persona.avatar_backend == "liveavatar":
            try:
                persona = persona.model_copy(update={"avatar_options": with_dit_workers(persona.avatar_options, workers)})
            except ValidationError as exc:
                raise ConfigError([f"--dit-workers {workers}: {exc.errors()[0]['msg']}"]) from None
        out.append(persona)
    return out


def _run_check(args: argparse.Namespace, console: Console) -> int:
    problems: list[str] = []
    for path in args.files:
        try:
            loaded = load_any(path, check_face=True)
            kind = "duet" if hasattr(loaded, "personas") else "persona"
            say(console, ("ok", "green"), f" {path} ({kind})")
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return 0


def _run_duet(args: argparse.Namespace, console: Console) -> int:
    from liveavatar.agent.render import render_duet

    duet = load_duet(args.config, check_face=True)
    personas = list(duet.personas)
    if args.dit_workers is not None:
        personas = _with_dit_workers(personas, args.dit_workers)
    limits = {"max_seconds": args.max_seconds, "max_turns": args.max_turns}
    plan = duet.plan.model_copy(update={k: v for k, v in limits.items() if v is not None})
    if args.browser or args.wav:
        return _live_duet(args, plan, personas, console)
    args.out = args.out or Path("duet.mp4")
    columns = (TextColumn("{task.description}", style="bold", markup=False), BarColumn(), MofNCompleteColumn(), TextColumn("turns"),
               TextColumn("{task.fields[video]:6.1f} s video"), TextColumn("{task.fields[speed]:4.1f}× real time"), TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(f"{personas[0].name} & {personas[1].name}", total=plan.max_turns, video=0.0, speed=0.0)
        clock = {"t0": None}

        def on_frame(frame, result) -> None:  # noqa: ANN001 - callback from the render
            import time

            now = time.perf_counter()
            clock["t0"] = clock["t0"] or now
            if result.frames % 5 == 0:
                elapsed = max(now - clock["t0"], 1e-6)
                progress.update(task, completed=len(result.turns), video=result.seconds, speed=result.seconds / elapsed)

        result = asyncio.run(render_duet(plan, personas, args.out, on_frame, args.seed))
        progress.update(task, completed=len(result.turns), total=max(len(result.turns), 1), video=result.seconds, speed=result.realtime_factor)
    for turn in result.turns:
        say(console, "  ", (turn.speaker, "bold"), f": {turn.text}", (" (cut off: the video ends here)" if turn.cut else "", "dim"))
    for error in result.errors:
        say(console, ("dialogue error:", "bold red"), f" {error}")
    say(console, ("wrote", "green"), f" {args.out}: {result.seconds:.2f} s of video in {result.wall_seconds:.1f} s "
                                      f"({result.realtime_factor:.1f}× real time)")  # fmt: skip
    return 0


def _run_bench(args: argparse.Namespace, console: Console) -> int:
    from liveavatar.testing.bench import run_benchmarks

    gpu_argv = ["--device", args.device] + (["--scale", args.scale] if args.scale else [])
    return run_benchmarks(args.what, frames=args.frames, out=sys.stdout, gpu_argv=gpu_argv, soak_blocks=args.blocks)


if __name__ == "__main__":
    sys.exit(main())
