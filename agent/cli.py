"""The `liveavatar` command: duet, check, bench."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from agent.config import ConfigError, load_any, load_duet

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
    duet.set_defaults(run=_run_duet)

    check = sub.add_parser("check", help="validate persona or duet YAML files without running them")
    check.add_argument("files", type=Path, nargs="+", help="persona or duet YAML files")
    check.set_defaults(run=_run_check)

    bench = sub.add_parser("bench", help="print benchmark figures as JSON lines")
    bench.add_argument("what", nargs="*", default=["portrait", "duet"], help="portrait, duet (default: both)")
    bench.add_argument("--frames", type=int, default=500, help="portrait frames to time (default 500)")
    bench.set_defaults(run=_run_bench)
    return parser


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
