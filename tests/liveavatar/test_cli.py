"""The tiny TEST config runs end to end through the `liveavatar` CLI: a duet of two LiveAvatar personas to MP4."""

from __future__ import annotations

from pathlib import Path

import av

from liveavatar.agent.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def persona(tmp_path: Path, name: str) -> Path:
    text = (EXAMPLES / f"{name}.yaml").read_text()
    text = text.replace("portraits/", f"{EXAMPLES / 'portraits'}/").split("\navatar:")[0]
    path = tmp_path / f"{name}.yaml"
    path.write_text(text + "\navatar:\n  backend: liveavatar\n  options:\n    config: tiny   # TEST CONFIG: random weights\n")
    return path


def test_duet_with_tiny_liveavatar_renders_an_mp4(tmp_path):
    nova, iris = persona(tmp_path, "nova"), persona(tmp_path, "iris")
    duet = tmp_path / "duet.yaml"
    duet.write_text(f"agents: [{nova}, {iris}]\nsize: [64, 64]\nfps: 25\naudio_rate: 24000\nmax_turns: 1\nmax_seconds: 2\n")
    out = tmp_path / "duet.mp4"
    assert main(["duet", str(duet), "--out", str(out), "--max-seconds", "2"]) == 0
    with av.open(str(out)) as container:
        frames = sum(1 for _ in container.decode(video=0))
        assert container.streams.audio, "the voice is muxed with the video"
    assert frames == 50, "2 s at 25 fps"


def test_dit_workers_flag_runs_the_duet_on_worker_processes(tmp_path):
    import psutil

    nova, iris = persona(tmp_path, "nova"), persona(tmp_path, "iris")
    duet = tmp_path / "duet.yaml"
    duet.write_text(f"agents: [{nova}, {iris}]\nsize: [64, 64]\nmax_turns: 1\nmax_seconds: 1\n")
    out = tmp_path / "duet.mp4"
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    assert main(["duet", str(duet), "--out", str(out), "--max-seconds", "1", "--dit-workers", "2"]) == 0
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 25
    alive = [p for p in psutil.Process().children(recursive=True) if p.pid not in before and p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    left = [" ".join(p.cmdline()) for p in alive]
    left = [cmd for cmd in left if "multiprocessing.resource_tracker" not in cmd]  # Python's own helper, shared by all
    assert left == [], "worker processes outlived the duet"
    assert main(["duet", str(duet), "--out", str(out), "--dit-workers", "3"]) == 2  # 3 does not divide 4 steps


def test_chat_from_a_wav_with_dit_workers_leaves_no_worker_behind(tmp_path, capsys):
    import psutil
    import soundfile

    from user_speech import GREETING, user_says

    wav, out = tmp_path / "question.wav", tmp_path / "chat.mp4"
    soundfile.write(str(wav), user_says(GREETING), 16000)
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    assert main(["chat", str(persona(tmp_path, "nova")), "--wav", str(wav), "--out", str(out), "--size", "64", "--dit-workers", "2"]) == 0
    assert "Nova answered you" in capsys.readouterr().err
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) >= 25 and container.streams.audio
    alive = [p for p in psutil.Process().children(recursive=True) if p.pid not in before and p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    left = [cmd for cmd in (" ".join(p.cmdline()) for p in alive) if "multiprocessing.resource_tracker" not in cmd]
    assert left == [], "worker processes outlived the chat"
