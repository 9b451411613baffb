"""The contract between a form and the engine: a writer, one per poem being written, that says
before every character which characters may come next, and hears which one came.

A writer knows only characters, never ids: the engine turns each `Allowed` into a mask over
its vocabulary (characters the vocabulary lacks are ignored) and applies it to the logits
before temperature, top-k and top-p, so the allowed set can never come out empty through
them. Sets must be stable objects (module constants, cached per trie node or per rhyme
group): the engine caches one mask per set object it sees.

The engine may fork a writer at a line's start, to write the line as several candidates:
`copy.copy(writer)` and a shallow copy of each attribute that is a list, set or dict (and,
recursively, of one that is itself a writer, as `LineGuard.inner`). So a writer keeps its
mutable state in plain lists, sets and dicts of immutable things, shares nothing mutable but
read-only plans, and hands out cached frozensets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Allowed:
    """The characters that may come next: in every set of `required` (all of them, when it is
    empty) and not in `banned`; within those, preferably in every set of `preferred` too. When
    nothing in the vocabulary is in all of `preferred`, the engine drops them for this
    character and records `relax` (e.g. "tone at line 3, position 4") in the poem's notes:
    rules a poem may bend go in `preferred` (free tone positions), rules it may not (shape,
    acrostic, rhyme) in `required`. `greedy` asks for the likeliest allowed character instead
    of a sampled one (an acrostic head typed in the other script: the likeliest candidate)."""

    required: tuple[frozenset[str], ...] = ()
    banned: frozenset[str] = frozenset()
    preferred: tuple[frozenset[str], ...] = ()
    relax: str = ""
    greedy: bool = False


ANYTHING = Allowed()


class Writer(Protocol):
    """One poem's rules as a state machine over its characters (the prompt's first)."""

    def allowed(self) -> Allowed:
        """What may come next."""
        ...

    def advance(self, ch: str) -> None:
        """`ch` came next (a prompt character, or what the engine sampled)."""
        ...

    @property
    def done(self) -> bool:
        """The poem is whole: the engine ends the row here."""
        ...

    def cut(self) -> int:
        """When the length runs out first: how many of the characters advanced so far end at
        a whole line (0: none does)."""
        ...

    # Optional: `branch(self, k: int) -> None`, called as each line starts on the writer of
    # each of its K candidates (k = 0 .. K-1), before anything of the line is asked: the
    # candidates may write the line differently (a keyword in another place), so that the
    # choice among them is also a choice among those ways.
    #
    # Optional: `penalty(self) -> float`, asked of a candidate's writer once its line is
    # complete (its last character, the newline or the clause's punctuation, advanced): 0.0
    # for a good line; a positive number lowers the candidate's score (its mean
    # log-probability per character); math.inf rejects it (unless every candidate is
    # rejected). A writer without it is 0.0 everywhere.


class FormError(ValueError):
    """Options a form cannot take (an acrostic of the wrong length or with characters the
    model does not know, a prompt that breaks the shape, a length too short); the message
    says, in words for the user, what to change; `field` names the option at fault where
    the message alone does not (the page shows the message under that field)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
