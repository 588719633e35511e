"""Whether a transcript stops mid-sentence: the words a person says before a pause that they mean to go on from.

An English sentence does not end on a filler ("um"), an article, a possessive or most conjunctions, nor on a
comma, a dash or an ellipsis. Such a pause is a hesitation, whatever the voice sounded like. And Whisper closes
what it hears as a whole sentence with a full stop, "?" or "!": in the end-of-turn benchmark it did so on all 252
whole utterances (216 transcribed live in three runs, 36 offline) and left the mark off half of the fragments at
which turns were cut ("My sister told me", "Tell me about him"), so words with no closing mark at all are
unfinished too. The converse does not hold ("I was thinking." may be finished or not), so this only ever keeps a
turn open.
"""

from __future__ import annotations

import re

FILLERS = frozenset("um umm uh uhh uhm er erm ah hm".split())
NEVER_LAST = FILLERS | frozenset(
    "a an the my your its our their and but or nor because if than although though unless whether of".split()
)
"""Words an English sentence does not end on, even where the recognizer wrote a full stop after them."""
SENTENCE_ENDS = (".", "?", "!", "。", "？", "！")
"""Marks that close a sentence (Whisper writes the full-width ones in Chinese and Japanese)."""
CLOSERS = "\"'”’»)]"
"""Quotes and brackets that may follow the closing mark."""


def ends_mid_sentence(text: str) -> bool:
    """True when `text` (a speech recognizer's words so far) stops where a sentence cannot end."""
    text = text.strip().rstrip(CLOSERS).rstrip()
    words = re.findall(r"[^\W\d_][\w']*", text.lower())
    if not words:
        return False  # no words (a cough, a breath): nothing to go on from
    if text.endswith(("...", "…", ",", "-", "—", ";", ":", "、", "，")):
        return True  # the recognizer heard the voice trail off or go on
    if not text.endswith(SENTENCE_ENDS):
        return True  # no closing mark: the recognizer did not hear a whole sentence
    return text.endswith((".", "。")) and words[-1] in NEVER_LAST  # "I wonder if uh." is still unfinished
