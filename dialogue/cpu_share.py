"""How much of the machine other processes are using, so the local LLM can write with fewer threads on a busy one.

llama.cpp's threads wait for each other many times per token. On a machine whose cores are all taken, a thread that
waits for one the kernel has parked loses the rest of its time slice: with one of two cores busy elsewhere, two
threads wrote SmolLM2's replies slower than one (16 tokens: 0.30-0.66 s against 0.21 s; README), and speech
recognition beside them stalled for seconds. On an idle machine two threads are faster (0.13 s).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

FIRST_WINDOW_S = 0.05  # the first reading measures any window at least this long (seconds): there is no figure to repeat yet
BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # user, nice, system, irq, softirq, steal in /proc/stat's "cpu" line (idle, iowait left out)


def usable_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class OtherProcessesCPU:
    """Cores that other processes (and the hypervisor) took, on average since the last reading (Linux only)."""

    def __init__(self, min_window_s: float = 0.5, proc: Path = Path("/proc")) -> None:
        self.min_window_s = min_window_s
        """A reading sooner than this after the last one (seconds) repeats the last figure instead of measuring (the
        first reading needs only FIRST_WINDOW_S since the object was made)."""
        self._proc = proc
        self._ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._last = self._sample()
        self._cores: float | None = None

    def _sample(self) -> tuple[float, int, int] | None:
        """(monotonic time, busy ticks of the whole machine, ticks of this process), or None where /proc is not there."""
        try:
            machine = (self._proc / "stat").read_text().split("\n", 1)[0].split()[1:]
            own = (self._proc / "self" / "stat").read_text().rsplit(")", 1)[1].split()
            return time.monotonic(), sum(int(machine[i]) for i in BUSY_FIELDS), int(own[11]) + int(own[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            return None

    def cores(self) -> float | None:
        """Cores used by everything but this process since the last reading (0 = idle); None when not known."""
        if self._last is None:
            return None
        elapsed = time.monotonic() - self._last[0]
        if elapsed < (self.min_window_s if self._cores is not None else FIRST_WINDOW_S):
            return self._cores
        now = self._sample()
        if now is None:
            return None
        seconds = now[0] - self._last[0]
        others = ((now[1] - self._last[1]) - (now[2] - self._last[2])) / self._ticks
        self._last, self._cores = now, max(0.0, others / seconds)
        return self._cores
