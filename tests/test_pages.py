"""The HTTP pages: login required, own conversations only, new / rename / delete, escaping."""

import pytest

from chat.models import Conversation

pytestmark = pytest.mark.django_db


def test_the_chat_list_requires_login(client):
    r = client.get("/chat/")
    assert r.status_code == 302 and r["Location"].startswith("/accounts/login/")


def test_login_page_renders(client):
    assert client.get("/accounts/login/").status_code == 200


def test_new_conversation_redirects_to_its_page(client, alice):
    client.force_login(alice)
    r = client.post("/chat/")
    conversation = Conversation.objects.get(owner=alice)
    assert r.status_code == 302 and r["Location"] == f"/chat/{conversation.id}/"
    page = client.get(r["Location"])
    assert page.status_code == 200 and f"/ws/chat/{conversation.id}/" in page.content.decode()


def test_it_lists_only_own_conversations(client, alice, bob):
    Conversation.objects.create(owner=alice, title="alice's")
    Conversation.objects.create(owner=bob, title="bob's")
    client.force_login(alice)
    body = client.get("/chat/").content.decode()
    assert "alice&#x27;s" in body and "bob" not in body.replace("bob@", "")


def test_another_users_conversation_is_a_404(client, alice, charlie):
    conversation = Conversation.objects.create(owner=alice)
    client.force_login(charlie)
    assert client.get(f"/chat/{conversation.id}/").status_code == 404
    assert client.post(f"/chat/{conversation.id}/delete/").status_code == 404
    assert client.post(f"/chat/{conversation.id}/rename/", {"title": "mine now"}).status_code == 404
    assert Conversation.objects.get(id=conversation.id).title == ""


def test_rename_and_delete(client, alice):
    conversation = Conversation.objects.create(owner=alice)
    client.force_login(alice)
    client.post(f"/chat/{conversation.id}/rename/", {"title": "  Trip   plans "})
    assert Conversation.objects.get(id=conversation.id).title == "Trip plans"
    assert client.get(f"/chat/{conversation.id}/delete/").status_code == 405
    client.post(f"/chat/{conversation.id}/delete/")
    assert not Conversation.objects.filter(id=conversation.id).exists()


def test_titles_are_escaped(client, alice):
    Conversation.objects.create(owner=alice, title="<script>alert(1)</script>")
    client.force_login(alice)
    body = client.get("/chat/").content.decode()
    assert "<script>alert(1)</script>" not in body and "&lt;script&gt;" in body


def test_the_admin_shows_conversations_and_runs(admin_client, alice):
    Conversation.objects.create(owner=alice, title="watched")
    assert "watched" in admin_client.get("/admin/chat/conversation/").content.decode()
    assert admin_client.get("/admin/chat/agentrun/").status_code == 200


def test_rename_never_redirects_off_site(client, alice):
    conversation = Conversation.objects.create(owner=alice)
    client.force_login(alice)
    r = client.post(f"/chat/{conversation.id}/rename/", {"title": "x", "next": "https://evil.example/"})
    assert r["Location"] == "/chat/"
    r = client.post(f"/chat/{conversation.id}/rename/", {"title": "x", "next": f"/chat/{conversation.id}/"})
    assert r["Location"] == f"/chat/{conversation.id}/"
