"""The contact form: Django's validation alone decides, the AI's suggestions are optional and never
an error (failing, slow or rate-limited), and names stay text on every page that shows them."""

import json
import logging
import os
import time

import pytest
from django.test import Client

from contact.models import ContactMessage
from contact.suggest import MAX_SUGGESTION_CHARS, RateLimiter, limiter, parse_suggestions, shorten

pytestmark = pytest.mark.django_db

LONG = "The export button on the chat page does nothing when I click it."
VALID = {"name": "Alice Example", "email": "alice@example.com", "message": LONG}
FAST_MODEL = "test:tps=0,words=12"


@pytest.fixture(autouse=True)
def fresh_limiter():
    limiter.clear()
    yield
    limiter.clear()


@pytest.fixture
def contact_log(caplog):
    """Records of the `nous` loggers, which do not propagate to the root logger caplog listens on."""
    nous = logging.getLogger("nous")
    nous.addHandler(caplog.handler)
    caplog.set_level(logging.DEBUG, logger="nous")
    yield caplog
    nous.removeHandler(caplog.handler)


def suggest(client, message, name="Alice", **extra):
    return client.post("/contact/suggest/", json.dumps({"message": message, "name": name}), content_type="application/json", **extra)


def test_the_form_renders_without_login(client):
    r = client.get("/contact/")
    body = r.content.decode()
    assert r.status_code == 200
    assert 'name="csrfmiddlewaretoken"' in body and 'id="id_message"' in body and 'id="contact-data"' in body
    assert 'href="/contact/"' in body  # the header's link


def test_a_valid_message_is_stored_and_confirmed(client):
    r = client.post("/contact/", VALID)
    assert r.status_code == 302 and r["Location"] == "/contact/thanks/"
    sent = ContactMessage.objects.get()
    assert (sent.name, sent.email, sent.message, sent.user) == ("Alice Example", "alice@example.com", LONG, None)
    page = client.get("/contact/thanks/").content.decode()
    assert "Thank you, Alice Example" in page and "alice@example.com" in page


def test_a_logged_in_sender_is_remembered_and_prefilled(client, alice):
    client.force_login(alice)
    assert 'value="alice@example.com"' in client.get("/contact/").content.decode()
    client.post("/contact/", VALID)
    assert ContactMessage.objects.get().user == alice


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"message": "too short, really"}, "message"),
        ({"message": " " * 30}, "message"),
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"message": "x" * 5001}, "message"),
    ],
)
def test_invalid_input_shows_errors_and_stores_nothing(client, change, field):
    r = client.post("/contact/", {**VALID, **change})
    body = r.content.decode()
    assert r.status_code == 200 and f'id="error-{field}"' in body and 'id="form-errors"' in body
    assert not ContactMessage.objects.exists()
    if field != "message":
        assert LONG in body  # what was typed comes back


def test_the_thanks_page_shows_only_this_sessions_message(client):
    client.post("/contact/", VALID)
    other = Client()
    page = other.get("/contact/thanks/").content.decode()
    assert "Alice" not in page and "We received your message" in page


def test_csrf_is_required(client):
    strict = Client(enforce_csrf_checks=True)
    assert strict.post("/contact/", VALID).status_code == 403
    assert suggest(strict, LONG).status_code == 403
    assert not ContactMessage.objects.exists()
    strict.get("/contact/")
    token = strict.cookies["csrftoken"].value
    assert suggest(strict, "short", HTTP_X_CSRFTOKEN=token).status_code == 200
    assert strict.post("/contact/", {**VALID, "csrfmiddlewaretoken": token}).status_code == 302


def test_suggestions_from_the_test_model(client, settings):
    settings.NOUS_FORM_MODEL = "test:tps=0"  # 60 words: longer than a suggestion may be
    r = suggest(client, LONG)
    suggestions = r.json()["suggestions"]
    assert r.status_code == 200 and 1 <= len(suggestions) <= 3
    assert all(isinstance(s, str) and s.strip() and len(s) <= MAX_SUGGESTION_CHARS for s in suggestions)
    # Deterministic: the same message gets the same suggestions.
    assert suggest(client, LONG).json()["suggestions"] == suggestions


@pytest.mark.skipif("NOUS_FORM_MODEL" in os.environ, reason="NOUS_FORM_MODEL is set in the environment")
def test_the_form_model_defaults_to_the_chat_model():
    from django.conf import settings

    assert settings.NOUS_FORM_MODEL == settings.NOUS_DEFAULT_MODEL


def test_a_short_message_gets_no_suggestions_and_no_model_call(client, settings):
    settings.NOUS_FORM_MODEL = "test:fail=provider_error"  # would log a warning if called
    for message in ("", "x" * 20, "   twenty chars or less   "):
        r = suggest(client, message)
        assert r.status_code == 200 and r.json() == {"suggestions": []}


def test_a_failing_model_gives_no_suggestions_and_no_error(client, settings, contact_log):
    settings.NOUS_FORM_MODEL = "test:fail=provider_error"
    r = suggest(client, LONG)
    assert r.status_code == 200 and r.json() == {"suggestions": []}
    warnings = [rec for rec in contact_log.records if rec.name == "nous.contact"]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING and "provider_error" in warnings[0].getMessage()
    assert not [rec for rec in contact_log.records if rec.levelno >= logging.ERROR]


def test_a_bad_model_string_gives_no_suggestions(client, settings, contact_log):
    settings.NOUS_FORM_MODEL = "test:nonsense=1"
    assert suggest(client, LONG).json() == {"suggestions": []}
    assert not [rec for rec in contact_log.records if rec.levelno >= logging.ERROR]


def test_a_slow_model_is_cut_off_at_the_timeout(client, settings, contact_log):
    settings.NOUS_FORM_MODEL = "test:tps=0.5,words=50"  # 100 s for the whole answer
    settings.NOUS_FORM_TIMEOUT_SECS = 0.2
    started = time.monotonic()
    r = suggest(client, LONG)
    assert r.status_code == 200 and r.json() == {"suggestions": []}
    assert time.monotonic() - started < 2
    assert [rec.levelno for rec in contact_log.records if rec.name == "nous.contact"] == [logging.WARNING]


@pytest.mark.parametrize(
    "body",
    ["not json", "[1, 2]", '{"name": "x"}', '{"message": 42}', '{"message": "' + "x" * 30 + '", "name": 7}', b"\xff\xfe"],
)
def test_bad_requests_are_400_json(client, body):
    r = client.post("/contact/suggest/", body, content_type="application/json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"


def test_an_over_long_message_is_400(client):
    r = suggest(client, "x" * 5001)
    assert r.status_code == 400 and r.json()["error"]["code"] == "message_too_long"
    assert suggest(client, "x" * 4990, name="").status_code == 200


def test_suggest_is_post_only(client):
    assert client.get("/contact/suggest/").status_code == 405


def test_suggestions_are_rate_limited_per_client(client, settings):
    settings.NOUS_FORM_MODEL = FAST_MODEL
    for _ in range(20):
        assert suggest(client, "short").status_code == 200
    r = suggest(client, LONG)
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(r["Retry-After"]) <= 60
    # Another address has its own budget.
    assert suggest(client, LONG, REMOTE_ADDR="10.0.0.7").status_code == 200


def test_the_rate_limiter_window_slides():
    now = [0.0]
    rl = RateLimiter(2, 60.0, clock=lambda: now[0])
    assert rl.hit("a") == 0 and rl.hit("a") == 0
    assert rl.hit("a") == pytest.approx(60.0)
    now[0] = 59.0
    assert rl.hit("a") == pytest.approx(1.0) and rl.hit("b") == 0
    now[0] = 60.0
    assert rl.hit("a") == 0


def test_parse_suggestions():
    text = "\n".join([
        "Here you go:",
        "",
        "1. Say which browser you use.",
        "- Say which browser you use.",
        "  * Add the **steps** that lead to the problem  ",
        "2) Mention   the error message.",
        "• A fourth one is dropped.",
    ])
    assert parse_suggestions(text) == [
        "Say which browser you use.", "Add the steps that lead to the problem", "Mention the error message.",
    ]
    assert parse_suggestions("") == [] and parse_suggestions(" \n - \n 3. \n") == []
    long = parse_suggestions("word " * 100)[0]
    assert len(long) <= MAX_SUGGESTION_CHARS and long.endswith("word…")
    assert shorten("short") == "short"


def test_names_are_escaped_on_the_thanks_and_admin_pages(client, admin_client):
    xss = "<script>alert(1)</script>"
    client.post("/contact/", {**VALID, "name": xss, "message": LONG + " " + xss})
    sent = ContactMessage.objects.get()
    assert sent.name == xss
    for body in (
        client.get("/contact/thanks/").content.decode(),
        admin_client.get("/admin/contact/contactmessage/").content.decode(),
        admin_client.get(f"/admin/contact/contactmessage/{sent.pk}/change/").content.decode(),
    ):
        assert xss not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body
