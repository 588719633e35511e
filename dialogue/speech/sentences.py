"""Cut streaming text into speakable pieces, so the first one is spoken while the rest is written."""

from __future__ import annotations

import re

_END = re.compile(r"([.!?…]+[\"')\]]*)(\s+)")  # sentence end followed by whitespace
_CLAUSE = re.compile(r"([,;:—])(\s+)")
ABBREVIATIONS = {"mr.", "mrs.", "ms.", "dr.", "st.", "e.g.", "i.e.", "etc.", "vs.", "no.", "prof."}


class SentenceSplitter:
    """Feed text deltas; take complete sentences out. The first piece may be a clause, to speak sooner.

    `first_clause_words`: the first piece is cut at a comma once it has at least this many words, or
    at any word boundary once it has `first_piece_max_words` (0 disables both); later pieces are whole
    sentences.
    """

    def __init__(self, first_clause_words: int = 4, first_piece_max_words: int = 7) -> None:
        self.first_clause_words = first_clause_words
        self.first_piece_max_words = first_piece_max_words
        self._buffer = ""
        self._emitted = 0

    def feed(self, text: str) -> list[str]:
        """Add text; returns the pieces it completed."""
        self._buffer += text
        pieces = []
        while True:
            piece = self._cut()
            if piece is None:
                return pieces
            pieces.append(piece)

    def flush(self) -> list[str]:
        """Whatever is left, as the last piece."""
        rest, self._buffer = self._buffer.strip(), ""
        return [rest] if rest else []

    def _cut(self) -> str | None:
        for match in _END.finditer(self._buffer):
            head = self._buffer[: match.end(1)]
            last_word = head.rsplit(None, 1)[-1].lower() if head.strip() else ""
            if last_word in ABBREVIATIONS:
                continue
            return self._take(match.end())
        if self._emitted == 0 and self.first_clause_words:
            for match in _CLAUSE.finditer(self._buffer):
                if len(self._buffer[: match.start()].split()) >= self.first_clause_words:
                    return self._take(match.end())
            if self.first_piece_max_words:
                words = list(re.finditer(r"\S+\s+", self._buffer))  # complete words only
                if len(words) >= self.first_piece_max_words:
                    return self._take(words[self.first_piece_max_words - 1].end())
        return None

    def _take(self, end: int) -> str | None:
        piece, self._buffer = self._buffer[:end].strip(), self._buffer[end:]
        if not piece:
            return None
        self._emitted += 1
        return piece


def split_sentences(text: str) -> list[str]:
    """A whole text as sentences."""
    splitter = SentenceSplitter(first_clause_words=0)
    return splitter.feed(text + " ") + splitter.flush()
