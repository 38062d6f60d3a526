"""What an inbound text asks for: STOP, START, HELP, possibly an opt-out, or nothing.

Pure functions, no I/O. ``classify(body)`` gives a ``Kind``; ``explain(body)`` gives
the ``Match`` with the rule that decided it (kept on the inbound record, so an
operator reviewing a flagged text sees why it was flagged).

The rules, in order; the first that matches decides:

1. Keywords (CTIA's, and the configured extras): the whole message, trimmed,
   with case, accents, spaces and punctuation ignored ("Stop.", " STOP!! ",
   "Stop All", "opt-out", full-width letters). STOP beats START beats HELP, so an extra
   that collides with a built-in can never turn an opt-out into an opt-in.
2. Only opt-out keywords, repeated ("STOP STOP", "stop. quit."): STOP; there is
   nothing else in the message to read another way.
3. Possible opt-outs (the FCC's 2024 order: consent may be revoked "by any
   reasonable means"), each rule below with its reason. Everything else is NONE.

Opting back in is never guessed: only an exact START keyword is START.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache


class Kind(StrEnum):
    STOP = "stop"
    POSSIBLE = "possible"
    START = "start"
    HELP = "help"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Match:
    kind: Kind
    # Which rule decided, for the record and for review ("" for NONE).
    rule: str = ""


STOP_WORDS = ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT")
START_WORDS = ("START", "UNSTOP", "YES")
HELP_WORDS = ("HELP", "INFO")

# Opt-out keywords whose small misspellings are still read as them. END and QUIT
# are left out: every one-letter slip of theirs is another English word (send,
# and, quiz, suit). Extras are left out too: their misspellings are another
# language's words.
FUZZY_STOP = ("stop", "stopall", "unsubscribe", "cancel", "revoke", "optout")

# Words that leave an opt-out keyword meaning opt-out ("STOP please", "stop it
# now", "quit texting me"). Only these: "stop by the office" and "stop laughing"
# have other words and stay NONE. "the" and "to" are not here ("the end").
# fmt: off
FILLERS = frozenset((
    "please", "pls", "plz", "plez", "pleas", "thanks", "thank", "you", "thx", "ty",
    "ok", "okay", "now", "right", "immediately", "asap", "already", "seriously",
    "permanently", "forever", "again", "anymore", "ever", "here", "it", "this", "that",
    "these", "all", "me", "my", "number", "spam", "text", "texts", "texting", "txt",
    "txts", "message", "messages", "messaging", "msg", "msgs", "sending", "contacting",
    "calling",
    # "I said stop", "yes stop", "I told you stop", "cancel my subscription".
    "i", "said", "told", "yes", "yeah", "subscription", "list",
))
# Words that are opt-outs only with nothing but filler around them: "REMOVE",
# "Please remove", "remove me" (never "remove the sign from my lawn").
SOFT_STOP = frozenset(("remove", "delete", "unsubscribe"))
# Dropped before the phrase rules are read: "please stop fucking texting me" is
# "stop texting me". None of them can turn a phrase around.
INTENSIFIERS = frozenset((
    "please", "pls", "plz", "just", "kindly", "fucking", "freaking", "frickin",
    "fricking", "effing", "damn", "goddamn", "bloody",
))
# A phrase right after one of these says the opposite ("don't stop texting me").
NEGATIONS = frozenset((
    "not", "don't", "dont", "never", "can't", "cant", "won't", "wont", "didn't",
    "didnt", "doesn't", "doesnt", "shouldn't", "wouldn't",
))
# fmt: on

_TEXTS = r"(?:texts?|txts?|messages?|msgs?|sms)"
_TEXTING = r"(?:texting|txting|messaging|msging|sending|contacting|calling|bothering|spamming)"
_CONTACT = r"(?:text|txt|message|msg|contact|sms|call|email)"
_MY_NUMBER = r"(?:me|my number|my phone|this number|this phone)"

# (reason, pattern over the normalised words, joined by single spaces)
PHRASES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (reason, re.compile(rf"\b(?:{pattern})\b"))
    for reason, pattern in (
        ("asks to stop the texts", rf"(?:stop|quit|cease|end) (?:{_TEXTING}|the {_TEXTS})"),
        ("asks to be removed", rf"(?:remove|delete|lose|erase) {_MY_NUMBER}"),
        ("asks to be taken off the list", rf"take {_MY_NUMBER} (?:off|out)"),
        ("says it is the wrong number", r"wrong (?:number|person)"),
        ("asks not to be texted", rf"(?:don't|dont|do not|never) {_CONTACT} {_MY_NUMBER}"),
        ("asks not to be texted", rf"(?:don't|dont|do not) want (?:\w+ )?{_TEXTS}"),
        ("asks to be left alone", r"leave me alone"),
        ("asks for no more texts", rf"no more {_TEXTS}"),
        # These words have no other meaning in a reply, wherever they stand.
        ("uses an opt-out word", r"unsubscribe|unsub|optout|opt me out|revoke"),
    )
)

# Curly apostrophes are straight ones; "#" is a number ("wrong #").
_APOSTROPHES = str.maketrans(
    {"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'", "#": " number "}
)
# Clauses: "Stop, who is this?" has a clause that is only STOP.
_CLAUSE_SPLIT = re.compile(r"[.,;:!?\n]+")
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_JOINED = re.compile(r"\b(opt|stop)[\s-]*(out|all)\b")


def classify(body: str, *, extra_stop: Iterable[str] = (), extra_optin: Iterable[str] = ()) -> Kind:
    """The kind of an inbound text (see the module's rules)."""
    return explain(body, extra_stop=extra_stop, extra_optin=extra_optin).kind


def explain(body: str, *, extra_stop: Iterable[str] = (), extra_optin: Iterable[str] = ()) -> Match:
    """The kind of an inbound text and the rule that decided it."""
    return _matcher(tuple(extra_stop), tuple(extra_optin)).match(body)


def compact(text: str) -> str:
    """A keyword's comparable form: casefolded, accents dropped, only letters and digits.

    Full-width letters and other compatibility forms fold to plain ones (NFKD);
    spaces, punctuation, symbols (emoji) and invisible characters are dropped.
    """
    return "".join(c for c in _fold(text) if c.isalnum())


# Cyrillic and Greek letters that look like Latin ones: a STOP spelt with them
# (Cyrillic DZE, TE, O, ER) is read as it looks.
_LOOKALIKES = str.maketrans(
    "\u0410\u0412\u0415\u0405\u0406\u0408\u041a\u041c\u041d\u041e\u0420\u0421"
    "\u0422\u0425\u0423\u0430\u0435\u0456\u0458\u043e\u0440\u0441\u0443\u0455"
    "\u0391\u0392\u0395\u0396\u0397\u0399\u039a\u039c\u039d\u039f\u03a1\u03a4\u03a5\u03a7\u03bf\u03b1",
    "ABESIJKMHOPCTXYaeijopcysABEZHIKMNOPTYXoa",
)


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.translate(_LOOKALIKES).casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def words(text: str) -> list[str]:
    """The message's words, folded like keywords; apostrophes kept ("don't")."""
    folded = _fold(text).translate(_APOSTROPHES)
    return _WORD.findall(_JOINED.sub(r"\1\2", folded))


class Matcher:
    """The rules, with one configuration's extra keywords."""

    def __init__(self, extra_stop: Iterable[str], extra_optin: Iterable[str]) -> None:
        def forms(ws: Iterable[str]) -> frozenset[str]:
            return frozenset(f for f in map(compact, ws) if f)

        self.stop = forms([*STOP_WORDS, *extra_stop])
        self.start = forms([*START_WORDS, *extra_optin]) - self.stop
        self.help = forms(HELP_WORDS) - self.stop - self.start

    def match(self, body: str) -> Match:
        whole = compact(body)
        if whole in self.stop:
            return Match(Kind.STOP, "opt-out keyword")
        if whole in self.start:
            return Match(Kind.START, "opt-in keyword")
        if whole in self.help:
            return Match(Kind.HELP, "help keyword")
        tokens = words(body)
        if tokens and all(t in self.stop for t in tokens):
            return Match(Kind.STOP, "opt-out keywords only")
        return self._possible(body, tokens)

    def _possible(self, body: str, tokens: list[str]) -> Match:
        plain = [t for t in tokens if t not in INTENSIFIERS]
        # A keyword with only politeness, the texts themselves or a number ("STOP 2")
        # around it.
        if any(self._stopish(t) for t in plain) and all(
            self._stopish(t) or t in FILLERS or t.isdigit() for t in plain
        ):
            return Match(Kind.POSSIBLE, "an opt-out keyword with only filler words")
        # A clause that is only a keyword: "Stop, who is this?".
        for clause in _CLAUSE_SPLIT.split(body):
            if compact(clause) in self.stop:
                return Match(Kind.POSSIBLE, "a clause that is an opt-out keyword")
        joined = " ".join(plain)
        for reason, pattern in PHRASES:
            for found in pattern.finditer(joined):
                if not _negated(plain, joined[: found.start()].count(" ")):
                    return Match(Kind.POSSIBLE, reason)
        return Match(Kind.NONE)

    def _stopish(self, token: str) -> bool:
        """An opt-out keyword, or a small misspelling of one ("stpo", "unsubscibe")."""
        return token in self.stop or token in SOFT_STOP or any(near(token, k) for k in FUZZY_STOP)


def _negated(tokens: list[str], index: int) -> bool:
    """A negation right before the word at ``index`` ("don't stop", "do not remove me")."""
    return index > 0 and tokens[index - 1] in NEGATIONS


def near(word: str, keyword: str) -> bool:
    """A small misspelling of ``keyword`` (not the keyword itself).

    Short keywords (STOP) allow only a swap of neighbours or a doubled letter
    ("stpo", "stoop"): one changed letter makes real words (shop, step, top).
    Up to 7 letters allow one letter more, one fewer, or a swap ("cancle", not
    "cancer"). Longer ones allow two edits of any kind but keep their first letter
    (unless it swapped places), so "subscribe" is not read as "unsubscribe".
    """
    if word == keyword or abs(len(word) - len(keyword)) > 2:
        return False
    if len(keyword) <= 4:
        return _swapped(word, keyword) or _doubled(word, keyword)
    if len(keyword) <= 7:
        if len(word) == len(keyword):
            return _swapped(word, keyword)
        return _one_inserted(word, keyword) or _one_inserted(keyword, word)
    starts_alike = word[0] == keyword[0] or _swapped(word, keyword)
    return starts_alike and edit_distance(word, keyword) <= 2


def _swapped(word: str, keyword: str) -> bool:
    if len(word) != len(keyword):
        return False
    diff = [i for i, (a, b) in enumerate(zip(word, keyword, strict=True)) if a != b]
    return (
        len(diff) == 2
        and diff[1] == diff[0] + 1
        and word[diff[0]] == keyword[diff[1]]
        and word[diff[1]] == keyword[diff[0]]
    )


def _doubled(word: str, keyword: str) -> bool:
    return len(word) == len(keyword) + 1 and any(
        word == keyword[: i + 1] + keyword[i:] for i in range(len(keyword))
    )


def _one_inserted(longer: str, shorter: str) -> bool:
    """``longer`` is ``shorter`` with one letter inserted somewhere."""
    if len(longer) != len(shorter) + 1:
        return False
    return any(longer[:i] + longer[i + 1 :] == shorter for i in range(len(longer)))


def edit_distance(a: str, b: str) -> int:
    """Optimal string alignment distance: inserts, deletes, changes, neighbour swaps."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], prev2[j - 2] + 1)
        prev2, prev = prev, row
    return prev[len(b)]


@lru_cache(maxsize=16)
def _matcher(extra_stop: tuple[str, ...], extra_optin: tuple[str, ...]) -> Matcher:
    return Matcher(extra_stop, extra_optin)
