"""Seeded, bounded fuzzing for the tests: each target runs generated cases until its count or its time budget is
spent, guards every case against hangs, the whole run against memory growth, and reports how many cases ran
and how long they took (printed at the end of the test session, see conftest.py).

CI runs the fixed seeds for a few seconds each; to explore further, set LIVEAVATAR_FUZZ_SEED (added to every
seed) and LIVEAVATAR_FUZZ_SCALE (multiplies cases and time).
"""

from __future__ import annotations

import contextlib
import os
import random
import resource
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

REPORTS: list[FuzzReport] = []
"""Every fuzz run of this test session, in order (the session summary prints them)."""


@dataclass
class FuzzReport:
    """What one fuzz target did."""

    name: str
    seed: int
    cases: int = 0
    seconds: float = 0.0
    outcomes: Counter = field(default_factory=Counter)
    rss_growth_mb: float = 0.0

    def line(self) -> str:
        """One line for the session summary."""
        seen = ", ".join(f"{n} {kind}" for kind, n in self.outcomes.most_common())
        return f"{self.name}: {self.cases} cases in {self.seconds:.1f} s (seed {self.seed}; {seen}; peak RSS +{self.rss_growth_mb:.0f} MB after the first)"


class CaseHung(AssertionError):
    """A case took longer than its deadline."""


class Fuzz:
    """`for rng in fuzz:` yields one seeded random generator per case until `max_cases` or `budget_s` is reached.

    Leaving the `with` block records the report and checks that at least `min_cases` ran and that the
    process's peak memory grew by less than `max_rss_growth_mb` after the first case.
    """

    def __init__(self, name: str, seed: int, max_cases: int, budget_s: float, min_cases: int, max_rss_growth_mb: float = 300.0) -> None:
        seed += int(os.environ.get("LIVEAVATAR_FUZZ_SEED", "0"))  # explore other cases: LIVEAVATAR_FUZZ_SEED=7
        scale = float(os.environ.get("LIVEAVATAR_FUZZ_SCALE", "1"))  # and more of them: LIVEAVATAR_FUZZ_SCALE=20
        self.report = FuzzReport(name, seed)
        self.max_cases = int(max_cases * scale)
        self.budget_s = budget_s * scale
        self.min_cases = min_cases
        self.max_rss_growth_mb = max_rss_growth_mb
        self._master = random.Random(seed)

    def __enter__(self) -> Fuzz:
        self._started = time.perf_counter()
        self._rss1: float | None = None
        return self

    def __exit__(self, kind: object, *rest: object) -> None:
        self.report.seconds = time.perf_counter() - self._started
        self.report.rss_growth_mb = _peak_rss_mb() - self._rss1 if self._rss1 is not None else 0.0
        REPORTS.append(self.report)
        print(self.report.line())
        if kind is None:
            assert self.report.cases >= self.min_cases, f"{self.report.name}: only {self.report.cases} cases in {self.budget_s} s"
            assert self.report.rss_growth_mb < self.max_rss_growth_mb, self.report.line()

    def __iter__(self) -> Iterator[random.Random]:
        while self.report.cases < self.max_cases and time.perf_counter() - self._started < self.budget_s:
            if self.report.cases == 1:
                self._rss1 = _peak_rss_mb()  # memory is counted from the end of the first case (models load once)
            self.report.cases += 1
            yield random.Random(self._master.getrandbits(64))

    def saw(self, outcome: str) -> None:
        """Count one case's outcome (e.g. "ok", "error")."""
        self.report.outcomes[outcome] += 1


@contextlib.contextmanager
def deadline(seconds: float, what: str) -> Iterator[None]:
    """Fail with CaseHung if the (synchronous) block runs longer than `seconds`; pytest-timeout's alarm is kept."""
    def fire(signum: int, frame: object) -> None:
        raise CaseHung(f"{what}: no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, fire)
    outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - started), 0.001))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------- values a hostile or careless user writes

NASTY_TEXT = ["", " ", "\t\n", "[/]", "[bold red]x", "R2 [/d2]", "x" * 5000, "../../../../etc/passwd", "/dev/zero", "/",
              "😀 émoji", "\u202eevil", "\x00", "NaN", "~", "null", "yes", "0x1F", "1e999", "2024-13-45", "{a: b}", "- x",
              "*alias", "&anchor", "!!python/object/apply:os.system ['true']", "%TAG", "'", '"', "\\", "$HOME", "C:\\x\\y"]  # fmt: skip
NASTY_NUMBERS = [0, -1, 1, 2, 3, 63, 64, 65, 129, 2048, 2049, 10**9, -(10**9), 2**64, 0.5, -0.0, 1e-300, 1e308, float("nan"),
                 float("inf"), float("-inf"), True, False]  # fmt: skip


def nasty_value(rng: random.Random, depth: int = 0) -> object:
    """A value of any YAML type that a schema may not expect."""
    kind = rng.random()
    if kind < 0.35:
        return rng.choice(NASTY_TEXT)
    if kind < 0.7:
        return rng.choice(NASTY_NUMBERS)
    if kind < 0.8 or depth > 2:
        return None
    if kind < 0.9:
        return [nasty_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(["name", "x", "options", "backend", "", "1"]): nasty_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
