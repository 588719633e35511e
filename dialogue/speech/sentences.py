"""Cut streaming text into speakable pieces, so the first one is spoken while the rest is written."""

from __future__ import annotations

import re

_END = re.compile(r"([.!?…]+[\"')\]]*)(\s+)")  # sentence end followed by whitespace
_CLAUSE = re.compile(r"([,;:—])(\s+)")
ABBREVIATIONS = {"mr.", "mrs.", "ms.", "dr.", "st.", "e.g.", "i.e.", "etc.", "vs.", "no.", "prof."}
MAX_PIECE_WORDS = 40
"""A sentence longer than this is cut at a clause or word boundary: speech starts before a run-on ends."""
MAX_PIECE_CHARS = 250
"""The most text one TTS call takes: its memory grows with the square of the length (5,000 words: 74 GB); 250 characters are about 15 s of speech."""


class SentenceSplitter:
    """Feed text deltas; take complete sentences out. The first piece may be a clause, to speak sooner.

    `first_clause_words`: the first piece is cut at a comma once it has at least this many words, or
    at any word boundary once it has `first_piece_max_words` (0 disables both); later pieces are whole
    sentences.
    """

    def __init__(self, first_clause_words: int = 4, first_piece_max_words: int = 7, max_piece_words: int = MAX_PIECE_WORDS) -> None:
        self.first_clause_words = first_clause_words
        self.first_piece_max_words = first_piece_max_words
        self.max_piece_words = max_piece_words
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
        words = list(re.finditer(r"\S+\s+", self._buffer))
        if len(words) >= self.max_piece_words:  # a run-on sentence: cut at its last clause mark, else between words
            limit = words[self.max_piece_words - 1].end()
            clauses = [m.end() for m in _CLAUSE.finditer(self._buffer, 0, limit)]
            return self._take(clauses[-1] if clauses else limit)
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


def bounded_pieces(text: str, max_chars: int = MAX_PIECE_CHARS) -> list[str]:
    """`text` in pieces of at most `max_chars`, cut at the last sentence end, else clause mark, else space that fits
    (a single word longer than that is cut inside)."""
    pieces, rest = [], text.strip()
    while len(rest) > max_chars:
        window = rest[: max_chars + 1]
        cut = next((ends[-1] for ends in ([m.end(1) for m in _END.finditer(window)], [m.end(1) for m in _CLAUSE.finditer(window)],
                                          [m.start() for m in re.finditer(r"\s", window)]) if ends and ends[-1] > 0), max_chars)  # fmt: skip
        pieces.append(rest[:cut].strip())
        rest = rest[cut:].strip()
    return [*pieces, rest] if rest else pieces
