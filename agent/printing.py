"""Console lines in which every string from a user, a file or a server is shown exactly as written.

Rich reads `[...]` in a plain string as markup: a persona named `R2 [/d2]` would crash the run and a
hint like `eyes: [[x, y], [x, y]]` would lose its brackets. Lines are therefore built as `Text`
from literal pieces; only the pieces this program writes itself carry a style.
"""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

Piece = str | tuple[str, str]
"""Literal text, or (literal text, rich style)."""


def line(*pieces: Piece) -> Text:
    """One line from literal pieces; nothing in them is parsed as markup."""
    return Text.assemble(*pieces)


def say(console: Console, *pieces: Piece) -> None:
    """Print one line of literal pieces; the terminal wraps it, so copied text stays whole."""
    console.print(line(*pieces), highlight=False, soft_wrap=True)
