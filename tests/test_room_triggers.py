"""When the room's AI answers: addressed by name or @ai as a word, a question, or after silence."""

from datetime import timedelta

import pytest

from rooms.ai import SILENCE_BEFORE_CHIMING_IN, addresses_ai, should_answer

QUIET = timedelta(seconds=10)


@pytest.mark.parametrize("content", ["@ai hi", "hi @AI", "Nous, what do you think", "ask @nous.", "(@ai) ok", "nous: go"])
def test_addressed_by_name_or_at_ai(content):
    assert addresses_ai(content, "Nous")


@pytest.mark.parametrize("content", ["I said so", "wait for me", "email@ai.example.com", "announce it", "AI is hard",
                                     "nousy neighbours", "@aide come here"])
def test_not_addressed_by_a_substring_or_the_everyday_word(content):
    assert not addresses_ai(content, "Nous")


def test_a_room_whose_ai_is_named_ai_answers_to_the_bare_word():
    assert addresses_ai("ai, help", "ai") and not addresses_ai("said", "ai")


@pytest.mark.parametrize("content, answers", [
    ("is it raining?", True), ("ready? let's go", True), ("what?!", True), ('he asked "why?"', True),
    ("see https://x.example/?q=1", False), ("no question here", False),
])
def test_a_question_is_a_trigger(content, answers):
    assert should_answer(content, "Nous", QUIET) is answers


def test_speaking_after_five_minutes_of_ai_silence_is_a_trigger():
    assert should_answer("morning all", "Nous", SILENCE_BEFORE_CHIMING_IN)
    assert not should_answer("morning all", "Nous", SILENCE_BEFORE_CHIMING_IN - timedelta(seconds=1))
