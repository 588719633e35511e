"""Whether a transcript stops mid-sentence: the words a person says before a pause that they mean to go on from.

An English sentence does not end on a filler ("um"), an article, a possessive or most conjunctions, nor on a
comma, a dash or an ellipsis; and seldom on a preposition, an auxiliary verb or a subject pronoun. Such a pause is
a hesitation, whatever the voice sounded like. The converse does not hold ("I was thinking" may be finished or
not), so this only ever keeps a turn open.
"""

from __future__ import annotations

import re

FILLERS = frozenset("um umm uh uhh uhm er erm ah hm".split())
NEVER_LAST = FILLERS | frozenset(
    "a an the my your its our their and but or nor because if than although though unless whether of".split()
)
"""Words an English sentence does not end on, even where the recognizer wrote a full stop after them."""
RARELY_LAST = NEVER_LAST | frozenset(
    "so that when while until since as about across after at before behind between by during for from in into near "
    "onto over through to toward towards under upon with within without am is are was were be been being have has had "
    "do does did can could will would shall should may might must i we they he she".split()
)
"""Words a spoken sentence seldom ends on: read as dangling only when no full stop follows them ("Yes I can." and "Come
in." are whole; a question mark never dangles)."""


def ends_mid_sentence(text: str) -> bool:
    """True when `text` (a speech recognizer's words so far) stops where a sentence cannot end."""
    text = text.strip()
    words = re.findall(r"[a-z']+", text.lower())
    if not words:
        return False  # no words (a cough, a breath): nothing to go on from
    if text.endswith(("...", "…", ",", "-", "—", ";", ":")):
        return True  # the recognizer heard the voice trail off or go on
    if text.endswith(("?", "!")):
        return False
    return words[-1] in (NEVER_LAST if text.endswith(".") else RARELY_LAST)
