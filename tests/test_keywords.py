"""The keyword matcher: what an inbound text asks for (worker/keywords.py)."""

from __future__ import annotations

import os
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.keywords import (
    FUZZY_STOP,
    HELP_WORDS,
    START_WORDS,
    STOP_WORDS,
    Kind,
    classify,
    edit_distance,
    explain,
    near,
)

# SENDQ_KEYWORD_EXAMPLES sets the cases per property (500 by default).
MANY = settings(max_examples=int(os.environ.get("SENDQ_KEYWORD_EXAMPLES", "500")), deadline=None)

# CTIA's keywords as people type them, spaced words included.
STOP_KEYWORDS = [*STOP_WORDS, "STOP ALL", "OPT OUT"]

STOPS = [
    "STOP",
    "Stop.",
    "STOP!!",
    " stop ",
    "Stop All",
    "stopall",
    "unsubscribe",
    "Cancel",
    "END",
    "quit!",
    "Revoke",
    "OptOut",
    "opt out",
    "Opt-Out",
    "\tstop\n",
    "\uff33\uff34\uff2f\uff30",  # full-width letters, as some keyboards send them
    "stop 🛑",
    "STOP STOP STOP",
    "stop. quit.",
]
STARTS = ["START", "start!", "Unstop", "YES", "yes."]
HELPS = ["HELP", "help?", "Info", "INFO."]
POSSIBLES = [
    "please stop texting me",
    "Please STOP texting me!!",
    "remove me",
    "Remove my number please",
    "take me off your list",
    "wrong number",
    "Wrong #",
    "sorry, wrong person",
    "don't text me",
    "Don\u2019t text me again",  # a curly apostrophe
    "do not contact me",
    "leave me alone",
    "unsubscribe me",
    "I want to unsubscribe",
    "how do I opt out of these",
    "I revoke my consent",
    "no more texts",
    "I don't want these texts",
    "stpo",
    "stoop",
    "unsubscibe",
    "cancle",
    "stop texting",
    "STOP please",
    "stop it now",
    "just stop",
    "quit texting me",
    "please stop fucking texting me",
    "Stop, who is this?",
    "STOP!!! who gave you my number",
]
NONES = [
    "don't stop",
    "Don't stop believing",
    "don't stop texting me",
    "stop by the office at 5",
    "I can't stop laughing",
    "when does the bus stop",
    "endorse",
    "yes I'll be there",
    "Yes please",
    "the end",
    "send",
    "shop",
    "step",
    "top",
    "stops",
    "cancer",
    "subscribe",
    "resubscribe",
    "who is this?",
    "I'll vote on Tuesday",
    "help me find my polling place",
    "don't remove me",
    "",
    "   ",
    "🙂",
]


@pytest.mark.parametrize("body", STOPS)
def test_an_opt_out_keyword_however_typed_is_stop(body: str) -> None:
    assert classify(body) is Kind.STOP


@pytest.mark.parametrize("body", STARTS)
def test_an_opt_in_keyword_is_start(body: str) -> None:
    assert classify(body) is Kind.START


@pytest.mark.parametrize("body", HELPS)
def test_a_help_keyword_is_help(body: str) -> None:
    assert classify(body) is Kind.HELP


@pytest.mark.parametrize("body", POSSIBLES)
def test_a_reasonable_way_of_saying_stop_is_a_possible_opt_out_with_its_rule(body: str) -> None:
    match = explain(body)
    assert match.kind is Kind.POSSIBLE and match.rule


@pytest.mark.parametrize("body", NONES)
def test_an_ordinary_reply_is_none(body: str) -> None:
    assert classify(body) is Kind.NONE


@pytest.mark.parametrize(
    ("body", "extra", "kind"),
    [
        ("ALTO", ["alto"], Kind.STOP),
        ("¡Alto!", ["ALTO"], Kind.STOP),
        ("Arrêt", ["ARRET"], Kind.STOP),
        ("ARRET", ["arrêt"], Kind.STOP),
        ("no más", ["NO MAS"], Kind.STOP),
        ("NOMAS", ["no más"], Kind.STOP),
        ("Straße", ["STRASSE"], Kind.STOP),  # casefolded: ß is ss
        ("alto por favor", ["ALTO"], Kind.NONE),  # the fillers are English
        ("ALTO", [], Kind.NONE),
    ],
)
def test_configured_opt_out_words_match_like_the_built_in_ones(
    body: str, extra: list[str], kind: Kind
) -> None:
    assert classify(body, extra_stop=extra) is kind


def test_configured_opt_in_words_are_start() -> None:
    assert classify("Comenzar!", extra_optin=["COMENZAR"]) is Kind.START
    assert classify("comenzar") is Kind.NONE


def test_an_extra_opt_in_word_can_never_turn_an_opt_out_into_an_opt_in() -> None:
    assert classify("STOP", extra_optin=["stop"]) is Kind.STOP
    assert classify("HELP", extra_stop=["help"]) is Kind.STOP


def test_blank_extra_words_are_ignored() -> None:
    assert classify("", extra_stop=["", " ", "!"]) is Kind.NONE


# -- generated ------------------------------------------------------------------

PUNCTUATION = ".!?,;:\u2026\u3002\uff01\uff1f"  # and the ellipsis, CJK stops


def typed(word: str, draw: st.DrawFn, *, respace: bool) -> str:
    """``word`` as someone might type it: any casing, spaces around, punctuation after;
    with ``respace``, the spaces between its words changed too ("STOPALL", "Stop  all")."""
    cased = "".join(c.upper() if draw(st.booleans()) else c.lower() for c in word)
    if respace:
        cased = cased.replace(" ", draw(st.sampled_from(["", " ", "  ", "\t"])))
    before = draw(st.text(alphabet=" \t\n", max_size=3))
    after = draw(st.text(alphabet=" \t\n", max_size=3))
    trailing = draw(st.text(alphabet=PUNCTUATION, max_size=4))
    return f"{before}{cased}{trailing}{after}"


@st.composite
def typed_keyword(draw: st.DrawFn, words: list[str], respace: bool = True) -> str:
    return typed(draw(st.sampled_from(words)), draw, respace=respace)


@MANY
@given(typed_keyword(STOP_KEYWORDS))
def test_any_casing_spacing_or_trailing_punctuation_of_a_stop_keyword_is_stop(body: str) -> None:
    assert classify(body) is Kind.STOP


@MANY
@given(typed_keyword(list(START_WORDS)))
def test_any_casing_or_punctuation_of_a_start_keyword_is_start(body: str) -> None:
    assert classify(body) is Kind.START


@MANY
@given(typed_keyword(list(HELP_WORDS)))
def test_any_casing_or_punctuation_of_a_help_keyword_is_help(body: str) -> None:
    assert classify(body) is Kind.HELP


@MANY
@given(typed_keyword([b for b in NONES if b.strip()], respace=False))
def test_a_listed_non_match_stays_none_however_typed(body: str) -> None:
    assert classify(body) is Kind.NONE


# Every keyword and phrase the matcher reads needs one of e, o, a or u ("quit", "unsub");
# without them no message can spell one, misspelt or not.
WITHOUT_TRIGGERS = "".join(
    c for c in string.ascii_letters + string.digits + " .,!?'-\n" if c.lower() not in "eoau"
)


@MANY
@given(st.text(alphabet=WITHOUT_TRIGGERS, max_size=80))
def test_text_that_cannot_spell_any_keyword_is_none(body: str) -> None:
    assert classify(body) is Kind.NONE


ORDINARY_WORDS = [
    "I", "will", "vote", "on", "Tuesday", "thanks", "for", "the", "reminder", "who", "is",
    "this", "sure", "maybe", "later", "can", "you", "call", "me", "what", "time", "does",
    "polling", "place", "open", "my", "address", "changed", "already", "voted", "bus",
    "office", "at", "5", "see", "there", "not", "sure", "yet", "ok", "lol", "please",
    "it", "now", "number", "texts",
]  # fmt: skip


@MANY
@given(st.lists(st.sampled_from(ORDINARY_WORDS), min_size=1, max_size=12))
def test_a_reply_of_ordinary_words_is_none(chosen: list[str]) -> None:
    assert classify(" ".join(chosen)) is Kind.NONE


@MANY
@given(st.text(max_size=300))
def test_any_text_at_all_gets_a_kind_without_error(body: str) -> None:
    assert explain(body).kind in Kind


# -- misspellings -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "keyword", "is_near"),
    [
        ("stpo", "stop", True),
        ("tsop", "stop", True),
        ("stoop", "stop", True),
        ("sttop", "stop", True),
        ("stop", "stop", False),  # the keyword itself is not a misspelling of it
        ("shop", "stop", False),
        ("spot", "stop", False),
        ("sto", "stop", False),
        ("cancle", "cancel", True),
        ("cancl", "cancel", True),
        ("cancer", "cancel", False),
        ("unsubscibe", "unsubscribe", True),
        ("unsuscribe", "unsubscribe", True),
        ("usubscrbe", "unsubscribe", True),
        ("subscribe", "unsubscribe", False),
        ("resubscribe", "unsubscribe", False),
    ],
)
def test_a_misspelling_is_near_its_keyword_and_a_real_word_is_not(
    word: str, keyword: str, is_near: bool
) -> None:
    assert near(word, keyword) is is_near


@given(st.sampled_from(FUZZY_STOP), st.data())
def test_two_neighbouring_letters_swapped_in_a_keyword_are_still_near(
    keyword: str, data: st.DataObject
) -> None:
    i = data.draw(st.integers(0, len(keyword) - 2))
    swapped = keyword[:i] + keyword[i + 1] + keyword[i] + keyword[i + 2 :]
    if swapped != keyword:
        assert near(swapped, keyword)
        assert classify(swapped) is Kind.POSSIBLE


@given(st.text(alphabet="abcdef", max_size=8), st.text(alphabet="abcdef", max_size=8))
def test_edit_distance_is_symmetric_and_zero_only_for_equal_words(a: str, b: str) -> None:
    assert edit_distance(a, b) == edit_distance(b, a)
    assert (edit_distance(a, b) == 0) == (a == b)


# Found by review: common opt-out wordings that were read as ordinary replies.
@pytest.mark.parametrize(
    "body",
    [
        "REMOVE",
        "Remove",
        "Please remove",
        "I said stop",
        "Yes stop",
        "cancel my subscription",
        "STOP 2",
    ],
)
def test_common_opt_out_wordings_are_possible_opt_outs(body: str) -> None:
    assert classify(body) is Kind.POSSIBLE


def test_a_stop_spelt_in_lookalike_cyrillic_letters_is_a_stop() -> None:
    assert classify("\u0405\u0422\u041e\u0420") is Kind.STOP


@pytest.mark.parametrize(
    "body", ["remove the sign from my lawn", "Yes I said I will be there", "YES I will vote"]
)
def test_remove_and_yes_in_a_sentence_stay_ordinary(body: str) -> None:
    assert classify(body) is Kind.NONE
