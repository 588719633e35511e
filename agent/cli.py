"""The `liveavatar` command: duet, check, bench."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from agent.config import ConfigError, load_any, load_duet, load_persona

EXIT_CONFIG = 2


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    try:
        return int(args.run(args, console) or 0)
    except ConfigError as exc:
        for problem in exc.problems:
            console.print(f"[bold red]error:[/] {problem}", highlight=False, soft_wrap=True)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="liveavatar", description="Real-time talking-avatar agents.")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    duet = sub.add_parser("duet", help="render two agents talking to each other to an MP4")
    duet.add_argument("config", type=Path, help="duet YAML (two persona files under `agents:`)")
    duet.add_argument("--out", type=Path, default=Path("duet.mp4"), help="MP4 file to write (default: duet.mp4)")
    duet.add_argument("--max-seconds", type=float, default=None, help="stop the video at this length (seconds)")
    duet.add_argument("--max-turns", type=int, default=None, help="stop after this many turns")
    duet.add_argument("--seed", type=int, default=0, help="seed for blinks and head motion (default 0)")
    duet.add_argument("--dit-workers", type=int, default=None, metavar="D",
                      help="liveavatar avatars: D DiT worker processes (1, 2 or 4; 0 = in-process)")
    live = duet.add_mutually_exclusive_group()
    live.add_argument("--browser", action="store_true", help="play the duet live in a page; speak to barge in on either agent")
    live.add_argument("--wav", type=Path, help="play the duet live with this WAV file as your voice (with --out: record it)")
    _page_options(duet)
    duet.set_defaults(run=_run_duet)

    chat = sub.add_parser("chat", help="talk with one persona, live")
    chat.add_argument("persona", type=Path, help="persona YAML")
    where = chat.add_mutually_exclusive_group()
    where.add_argument("--browser", action="store_true", help="serve a page with mic, camera and the avatar (recommended)")
    where.add_argument("--wav", type=Path, help="use this WAV file as the microphone (headless)")
    _page_options(chat)
    chat.add_argument("--out", type=Path, default=None, help="with --wav: also record the avatar to this MP4")
    chat.add_argument("--headphones", action="store_true", help="local devices: no echo guard (you can interrupt the avatar)")
    chat.add_argument("--size", type=int, default=512, help="avatar frame size in pixels (default 512)")
    chat.add_argument("--metrics", type=Path, default=None, help="append per-turn latency figures to this JSON-lines file")
    chat.add_argument("--dit-workers", type=int, default=None, metavar="D",
                      help="liveavatar avatar: D DiT worker processes (1, 2 or 4; 0 = in-process)")
    chat.set_defaults(run=_run_chat)

    check = sub.add_parser("check", help="validate persona or duet YAML files without running them")
    check.add_argument("files", type=Path, nargs="+", help="persona or duet YAML files")
    check.set_defaults(run=_run_check)

    bench = sub.add_parser("bench", help="print benchmark figures as JSON lines")
    bench.add_argument("what", nargs="*", default=["duet", "portrait"],
                       help="any of: duet, latency, soak, omni, liveavatar, tpp, portrait (default: duet portrait)")
    bench.add_argument("--frames", type=int, default=500, help="portrait frames to time (default 500)")
    bench.set_defaults(run=_run_bench)
    return parser


def _page_options(parser: argparse.ArgumentParser) -> None:
    """The options of the browser page (used with --browser)."""
    parser.add_argument("--host", default="127.0.0.1", help="with --browser: address to serve the page on (default 127.0.0.1; others need --token)")
    parser.add_argument("--port", type=int, default=8765, help="with --browser: port for the page (default 8765)")
    parser.add_argument("--token", default=None, help="with --browser: secret the page must present (required off 127.0.0.1)")
    parser.add_argument("--no-open", action="store_true", help="with --browser: do not open the page in a browser")


def _announce_page(console: Console, open_it: bool):  # noqa: ANN202 - the server's ready callback
    """Say where the page is, and open it unless asked not to."""

    def ready(server) -> None:  # noqa: ANN001 - a BrowserServer
        console.print(f"[green]open[/] {server.url}  (Ctrl-C to stop)", highlight=False)
        if open_it:
            import webbrowser

            webbrowser.open(server.url)

    return ready


def _run_chat(args: argparse.Namespace, console: Console) -> int:
    from agent.chat import converse, make_agent, serve_browser
    from agent.clock import Clock
    from agent.metrics import MetricsLog
    from devices.local import DeviceError

    persona = load_persona(args.persona, check_face=True)
    if args.dit_workers is not None:
        persona = _with_dit_workers([persona], args.dit_workers)[0]
    if not args.browser and not args.wav and not args.headphones and persona.turn_taking.echo_guard_s == 0:
        # Speakers without echo cancellation: the avatar would hear itself and stop. Guard its speech.
        persona = persona.model_copy(update={"turn_taking": persona.turn_taking.model_copy(update={"echo_guard_s": 1e9})})
    metrics = MetricsLog(args.metrics)
    show = _event_printer(console)
    with console.status(f"loading {persona.name}…"):
        agent = make_agent(persona, (args.size, args.size))
    try:
        if args.browser:
            asyncio.run(serve_browser(agent, args.host, args.port, args.token, metrics, show, _announce_page(console, not args.no_open)))
        elif args.wav:
            from devices.mp4 import MP4Sink
            from devices.sources import WavFileSource

            clock = Clock()
            try:
                source = WavFileSource(clock, args.wav)
            except ValueError as exc:
                raise ConfigError([f"--wav: {exc}"]) from None
            sinks = [MP4Sink(args.out, agent.avatar.size, agent.avatar.fps, agent.avatar.audio_rate)] if args.out else []
            asyncio.run(converse(agent, source, sinks, metrics, clock, on_event=show))
        else:
            asyncio.run(_local_chat(agent, metrics, show))
    except DeviceError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        return 3
    finally:
        metrics.close()
    return 0


async def _local_chat(agent, metrics, show) -> None:  # noqa: ANN001
    from agent.chat import converse
    from agent.clock import Clock
    from devices.local import MicrophoneSource, SpeakerSink, WindowSink

    clock = Clock()
    source = MicrophoneSource(clock)
    sinks = [SpeakerSink(agent.avatar.audio_rate), WindowSink(agent.name)]
    await converse(agent, source, sinks, metrics, clock, on_event=show)


def _event_printer(console: Console):  # noqa: ANN202
    """Prints the conversation as it goes: who said what, and each turn's latency."""

    def show(event: dict) -> None:
        kind = event.get("type")
        if kind == "transcript":
            who = "[cyan]you[/]" if event["role"] == "user" else f"[yellow]{event.get('speaker') or 'avatar'}[/]"
            console.print(f"{who}: {'…' if event.get('delta') else ''}{event['text'].strip()}", highlight=False)
        elif kind == "interrupted":
            console.print(f"[magenta]interrupted[/] (heard: {event['heard']!r})", highlight=False)
        elif kind == "metrics" and event.get("response_latency_s") is not None:
            barge = event.get("barge_in_latency_s")
            heard = {"user": "you", "agent": "the other agent", "opening": "the opening"}.get(event.get("heard_from"), "you")
            console.print(f"[dim]{event.get('speaker') or 'avatar'} answered {heard}: response {event['response_latency_s']:.2f} s"
                          + (f", barge-in {barge:.2f} s" if barge is not None else "") + "[/]", highlight=False)  # fmt: skip
        elif kind == "error":
            console.print(f"[bold red]error:[/] {event['message']}", highlight=False)

    return show


def _live_duet(args: argparse.Namespace, duet, console: Console) -> int:  # noqa: ANN001 - a Duet
    """The duet played live (real time): the agents talk on their own; the person can barge in on either."""
    from agent.chat import converse, make_agent, serve_browser
    from agent.clock import Clock
    from agent.conversation import LiveDuetPlan
    from agent.metrics import MetricsLog

    spec = duet.spec
    plan = LiveDuetPlan(spec.opening, args.max_turns or spec.max_turns, spec.turn_gap_s, spec.lead_in_s)
    with console.status("loading the agents…"):
        agents = [make_agent(p, spec.size, spec.fps, spec.audio_rate) for p in duet.personas]
    metrics, show = MetricsLog(), _event_printer(console)
    if args.browser:
        asyncio.run(serve_browser(agents, args.host, args.port, args.token, metrics, show, _announce_page(console, not args.no_open), duet=plan))
        return 0
    from devices.mp4 import MP4Sink
    from devices.sources import WavFileSource

    clock = Clock()
    try:
        source = WavFileSource(clock, args.wav, tail_s=args.max_seconds or spec.max_seconds)
    except ValueError as exc:
        raise ConfigError([f"--wav: {exc}"]) from None
    width, height = spec.size
    sinks = [MP4Sink(args.out, (width * 2, height), spec.fps, spec.audio_rate)] if args.out else []
    until = args.max_seconds or spec.max_seconds
    asyncio.run(converse(agents, source, sinks, metrics, clock, until=until, on_event=show, duet=plan))
    console.print(f"[green]done[/]: {len(metrics.turns)} turns" + (f", recorded {args.out}" if args.out else ""), highlight=False)
    return 0


def _with_dit_workers(personas: list, workers: int) -> list:  # noqa: ANN001 - Persona objects
    """The personas with `dit_workers` set on their liveavatar avatars; an error if none has one."""
    from pydantic import ValidationError

    from avatar.liveavatar.backend import with_dit_workers

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
            console.print(f"[green]ok[/] {path} ({kind})", highlight=False)
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return 0


def _run_duet(args: argparse.Namespace, console: Console) -> int:
    from agent.render import render_duet

    duet = load_duet(args.config, check_face=True)
    if args.dit_workers is not None:
        duet = duet.model_copy(update={"personas": tuple(_with_dit_workers(list(duet.personas), args.dit_workers))})
    if args.browser or args.wav:
        return _live_duet(args, duet, console)
    max_seconds = args.max_seconds or duet.spec.max_seconds
    max_turns = args.max_turns or duet.spec.max_turns
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("turns"),
               TextColumn("{task.fields[video]:6.1f} s video"), TextColumn("{task.fields[speed]:4.1f}× real time"), TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(f"{duet.personas[0].name} & {duet.personas[1].name}", total=max_turns, video=0.0, speed=0.0)
        clock = {"t0": None}

        def on_frame(frame, result) -> None:  # noqa: ANN001 - callback from the renderer
            import time

            now = time.perf_counter()
            clock["t0"] = clock["t0"] or now
            if result.frames % 5 == 0:
                elapsed = max(now - clock["t0"], 1e-6)
                progress.update(task, completed=len(result.turns), video=result.seconds, speed=result.seconds / elapsed)

        stats = asyncio.run(render_duet(duet, args.out, max_seconds, max_turns, on_frame, args.seed))
        progress.update(task, completed=len(stats.result.turns), total=max(len(stats.result.turns), 1), video=stats.result.seconds, speed=stats.realtime_factor)
    for turn in stats.result.turns:
        console.print(f"  [bold]{turn.speaker}[/]: {turn.text}", highlight=False)
    for error in stats.result.errors:
        console.print(f"[bold red]dialogue error:[/] {error}", highlight=False)
    console.print(f"[green]wrote[/] {args.out}: {stats.result.seconds:.1f} s of video in {stats.wall_seconds:.1f} s "
                  f"({stats.realtime_factor:.1f}× real time)", highlight=False)  # fmt: skip
    return 0


def _run_bench(args: argparse.Namespace, console: Console) -> int:
    from agent.bench import run_benchmarks

    run_benchmarks(args.what, frames=args.frames, out=sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
