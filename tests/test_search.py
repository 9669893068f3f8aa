"""Search over one's own conversations: full-text on PostgreSQL, substrings on SQLite; the same
assertions in both modes (the words used are neither English stop words nor changed by stemming)."""

import re

import pytest
from django.db import connection

from chat.models import Conversation, Message
from chat.search import MAX_QUERY_CHARS, RESULTS_PER_PAGE, search_backend
from rooms.models import create_room

pytestmark = pytest.mark.django_db


def say(conversation, content, role="user"):
    return Message.objects.create(conversation=conversation, role=role, content=content,
                                  author=conversation.owner if role == "user" else None)


def search(client, q, **params):
    r = client.get("/chat/search/", {"q": q, **params})
    assert r.status_code == 200
    return r.content.decode()


def result_ids(body):
    return [int(i) for i in re.findall(r'data-message-id="(\d+)"', body)]


@pytest.fixture
def chats(alice):
    trip = Conversation.objects.create(owner=alice, title="Trip plans")
    other = Conversation.objects.create(owner=alice, title="Cooking")
    return trip, other


def test_search_requires_login(client):
    r = client.get("/chat/search/?q=x")
    assert r.status_code == 302 and r["Location"].startswith("/accounts/login/")


def test_it_finds_own_messages_by_one_word(client, alice, chats):
    trip, other = chats
    lisbon = say(trip, "We should visit Lisbon in spring")
    answer = say(trip, "Lisbon is lovely in April", role="assistant")
    say(other, "A recipe for bread")
    client.force_login(alice)
    body = search(client, "lisbon")
    # Newest first, the assistant's answers too.
    assert result_ids(body) == [answer.id, lisbon.id]
    assert "Trip plans" in body and "Cooking" not in body
    assert "Assistant" in body and "alice" in body


def test_it_finds_by_two_words_all_of_them(client, alice, chats):
    trip, other = chats
    both = say(trip, "Pack the umbrella and the passport")
    say(trip, "Only the umbrella here")
    say(other, "Only the passport here")
    client.force_login(alice)
    assert result_ids(search(client, "umbrella passport")) == [both.id]
    assert result_ids(search(client, "PASSPORT Umbrella")) == [both.id]  # case does not matter


def test_never_another_users_messages_nor_a_rooms(client, alice, bob, chats):
    trip, _ = chats
    mine = say(trip, "the secret word is pineapple")
    bobs = Conversation.objects.create(owner=bob, title="Bob's chat")
    say(bobs, "bob also says pineapple")
    # A room alice owns: its conversation is hers, of kind room; still not searched.
    room = create_room(alice, "Fruit room")
    say(room.conversation, "pineapple in the room")
    client.force_login(alice)
    body = search(client, "pineapple")
    assert result_ids(body) == [mine.id]
    assert "Bob&#x27;s chat" not in body and "Fruit room" not in body
    client.force_login(bob)
    assert len(result_ids(search(client, "pineapple"))) == 1


def test_tool_and_error_messages_are_not_searched(client, alice, chats):
    trip, _ = chats
    say(trip, '{"name": "weather", "result": "sunny zanzibar"}', role="tool")
    say(trip, "zanzibar provider failed", role="error")
    client.force_login(alice)
    assert result_ids(search(client, "zanzibar")) == []


def test_matching_words_are_marked(client, alice, chats):
    trip, _ = chats
    say(trip, "First we take the ferry, then the ferry takes us to the island")
    client.force_login(alice)
    body = search(client, "ferry island")
    assert body.count("<mark>ferry</mark>") == 2 and "<mark>island</mark>" in body


def test_the_snippet_is_a_window_around_the_match(client, alice, chats):
    trip, _ = chats
    say(trip, " ".join(["filler"] * 300) + " the hidden treasure is here " + " ".join(["padding"] * 300))
    client.force_login(alice)
    body = search(client, "treasure")
    snippet = re.search(r'<span class="search-snippet">(.*?)</span>', body, re.S).group(1)
    assert "<mark>treasure</mark>" in snippet and len(snippet) < 600


def test_html_in_messages_is_escaped(client, alice, chats):
    trip, _ = chats
    say(trip, "look <script>alert('xss')</script> here and <b>bold</b> mango")
    client.force_login(alice)
    body = search(client, "mango")
    assert "<script>alert" not in body and "<b>bold" not in body
    assert "&lt;b&gt;bold" in body and "<mark>mango</mark>" in body


def test_html_in_the_query_is_escaped(client, alice, chats):
    trip, _ = chats
    say(trip, "how to write <b>bold</b> in html")
    client.force_login(alice)
    body = search(client, "<script>alert(1)</script>")
    assert "<script>alert(1)" not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    body = search(client, "<b>")
    assert "<b>" not in body
    if connection.vendor != "postgresql":
        # A substring search finds the literal text and shows it escaped.
        assert "<mark>&lt;b&gt;</mark>bold" in body


def test_the_pg_headline_cannot_be_made_into_markup(alice, chats):
    """The snippet's only tags are <mark>: message text that looks like a marker stays text."""
    trip, _ = chats
    say(trip, "<mark>fake</mark> [[00]] kiwi </mark><script>x</script>")
    backend = search_backend()
    from chat.search import search_messages

    [message] = search_messages(alice, "kiwi", backend)
    snippet = backend.snippet(message, "kiwi")
    assert re.sub(r"</?mark>", "", snippet.replace("<mark>kiwi</mark>", "")).count("<") == 0
    assert "&lt;script&gt;" in snippet and "<mark>kiwi</mark>" in snippet


def test_empty_and_blank_queries_show_the_form(client, alice, chats):
    trip, _ = chats
    say(trip, "anything")
    client.force_login(alice)
    for q in ("", "   ", "\x00"):
        body = search(client, q)
        assert result_ids(body) == [] and 'name="q"' in body
    assert client.get("/chat/search/").status_code == 200


@pytest.mark.parametrize("q", ["word " * 2000, "x" * 50_000, "\x00nul\x00", '"unclosed', "-", "a -b | (c", "!!!", "the and of"])
def test_odd_and_very_long_queries_are_no_error(client, alice, chats, q):
    trip, _ = chats
    say(trip, "some text with the word nul in it")
    client.force_login(alice)
    body = search(client, q)
    value = re.search(r'id="search-q" value="([^"]*)"', body).group(1)
    assert len(value) <= MAX_QUERY_CHARS * 6  # escaped, but cut to MAX_QUERY_CHARS characters


def test_results_are_paginated(client, alice, chats):
    trip, _ = chats
    made = [say(trip, f"note number {i} about walnuts") for i in range(RESULTS_PER_PAGE + 5)]
    newest_first = [m.id for m in reversed(made)]
    client.force_login(alice)
    first = search(client, "walnuts")
    assert result_ids(first) == newest_first[:RESULTS_PER_PAGE]
    assert "25 messages found" in first and 'rel="next"' in first and "page=2" in first
    second = search(client, "walnuts", page=2)
    assert result_ids(second) == newest_first[RESULTS_PER_PAGE:]
    assert 'rel="prev"' in second and 'rel="next"' not in second
    # A page past the end or not a number is the last or the first page, not an error.
    assert result_ids(search(client, "walnuts", page=99)) == newest_first[RESULTS_PER_PAGE:]
    assert result_ids(search(client, "walnuts", page="x")) == newest_first[:RESULTS_PER_PAGE]


def test_the_link_carries_the_message_id(client, alice, chats):
    trip, _ = chats
    message = say(trip, "meet at the lighthouse")
    client.force_login(alice)
    body = search(client, "lighthouse")
    assert f'href="/chat/{trip.id}/?message={message.id}#message-{message.id}"' in body
    assert client.get(f"/chat/{trip.id}/?message={message.id}").status_code == 200


def test_the_list_and_the_chat_page_have_a_search_box(client, alice, chats):
    trip, _ = chats
    client.force_login(alice)
    for path in ("/chat/", f"/chat/{trip.id}/"):
        body = client.get(path).content.decode()
        assert 'action="/chat/search/"' in body and 'name="q"' in body


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the full-text index is PostgreSQL's")
def test_postgresql_uses_the_full_text_index(alice, chats):
    from chat.search import search_messages

    trip, _ = chats
    say(trip, "indexed words")
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'message_content_search'")
        [(indexdef,)] = cursor.fetchall()
        cursor.execute("SET enable_seqscan = off")
        try:
            # Over all messages the planner takes the index (here, with a few rows, only if told to) ...
            plan = search_backend().matching(Message.objects.all(), "indexed").explain()
            assert "message_content_search" in plan, plan
            # ... and the search itself filters with the index's very expression.
            expression = re.search(r"gin \((.*)\)$", indexdef).group(1)
            assert expression in search_messages(alice, "indexed").explain()
        finally:
            cursor.execute("RESET enable_seqscan")


@pytest.mark.skipif(connection.vendor != "postgresql", reason="stemming is PostgreSQL's")
def test_postgresql_matches_word_forms(client, alice, chats):
    trip, _ = chats
    message = say(trip, "She was running along the beaches")
    client.force_login(alice)
    body = search(client, "run beach")
    assert result_ids(body) == [message.id]
    assert "<mark>running</mark>" in body and "<mark>beaches</mark>" in body
