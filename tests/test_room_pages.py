"""The room pages: create, list, join, private rooms (404 outside), the members panel, escaping."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from rooms.models import Membership, Room, create_room

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent


def page_data(response) -> dict:
    body = response.content.decode()
    start = body.index('<script id="page-data" type="application/json">') + len('<script id="page-data" type="application/json">')
    return json.loads(body[start:body.index("</script>", start)])


def test_the_rooms_pages_require_login(client, alice):
    room = create_room(alice, "Open")
    for url in ("/rooms/", f"/rooms/{room.slug}/"):
        r = client.get(url)
        assert r.status_code == 302 and r["Location"].startswith("/accounts/login/")
    assert client.post(f"/rooms/{room.slug}/join/").status_code == 302
    assert not Membership.objects.exists()


def test_create_a_room_and_land_on_its_page(client, alice):
    client.force_login(alice)
    form = client.get("/rooms/").content.decode()
    assert f'value="{settings.NOUS_DEFAULT_MODEL}"' in form and 'name="is_private"' in form
    r = client.post("/rooms/", {"title": "  Book   club ", "slug": "", "model": "test:tps=40,words=60"})
    room = Room.objects.get()
    assert r.status_code == 302 and r["Location"] == f"/rooms/{room.slug}/"
    assert (room.title, room.slug, room.owner, room.is_private) == ("Book club", "book-club", alice, False)
    assert room.conversation.model == "test:tps=40,words=60"
    page = client.get(r["Location"])
    assert page.status_code == 200
    data = page_data(page)
    assert data == {"room": room.to_dict(), "ws_path": "/ws/rooms/book-club/", "username": "alice", "is_owner": True,
                    "max_message_chars": settings.NOUS_MAX_MESSAGE_CHARS}
    assert not Membership.objects.exists()  # the owner is in it without a membership


def test_create_with_a_slug_private_and_a_taken_slug(client, alice):
    client.force_login(alice)
    client.post("/rooms/", {"title": "Secret", "slug": "hideout", "is_private": "on", "model": "test:"})
    r = client.post("/rooms/", {"title": "Another", "slug": "hideout", "model": "test:"})
    first, second = Room.objects.order_by("id")
    assert first.slug == "hideout" and first.is_private
    assert second.slug.startswith("hideout-") and not second.is_private
    assert r["Location"] == f"/rooms/{second.slug}/"


def test_a_bad_form_says_why_and_creates_nothing(client, alice):
    client.force_login(alice)
    for data, why in [({"title": "   ", "model": "test:"}, "title"),
                      ({"title": "x", "model": "nosuch:model"}, "Unknown provider"),
                      ({"title": "x", "slug": "no spaces!", "model": "test:"}, "slug"),
                      ({"title": "x\x00y", "model": ""}, "required")]:
        r = client.post("/rooms/", data)
        assert r.status_code == 200 and why in r.content.decode(), data
    assert not Room.objects.exists()


def test_the_list_shows_open_rooms_and_mine(client, alice, bob):
    open_room = create_room(alice, "Open one")
    create_room(alice, "Alice private", is_private=True)
    bobs = create_room(bob, "Bob private", is_private=True)
    Membership.objects.create(room=bobs, user=alice)
    client.force_login(alice)
    body = client.get("/rooms/").content.decode()
    mine = body[body.index('id="my-rooms"'):body.index('id="open-rooms"')]
    open_part = body[body.index('id="open-rooms"'):]
    assert "Open one" in mine and "Alice private" in mine and "Bob private" in mine
    assert "Open one" in open_part and "private" not in open_part
    client.force_login(bob)
    body = client.get("/rooms/").content.decode()
    open_part = body[body.index('id="open-rooms"'):]
    assert "Alice private" not in body
    assert f'action="/rooms/{open_room.slug}/join/"' in open_part


def test_join_an_open_room(client, alice, bob):
    room = create_room(alice, "Open one")
    client.force_login(bob)
    assert client.get(f"/rooms/{room.slug}/join/").status_code == 405
    r = client.post(f"/rooms/{room.slug}/join/")
    assert r.status_code == 302 and r["Location"] == f"/rooms/{room.slug}/"
    client.post(f"/rooms/{room.slug}/join/")
    assert list(Membership.objects.values_list("user__username", flat=True)) == ["bob"]
    body = client.get("/rooms/").content.decode()
    assert "Open one" in body[body.index('id="my-rooms"'):body.index('id="open-rooms"')]


def test_visiting_an_open_room_joins_it(client, alice, bob):
    room = create_room(alice, "Open one")
    client.force_login(bob)
    r = client.get(f"/rooms/{room.slug}/")
    assert r.status_code == 200
    data = page_data(r)
    assert data["is_owner"] is False and data["username"] == "bob" and data["ws_path"] == f"/ws/rooms/{room.slug}/"
    assert Membership.objects.filter(room=room, user=bob).exists()
    assert 'id="members-panel"' not in r.content.decode()


def test_a_private_room_is_a_404_for_outsiders(client, alice, bob, charlie):
    room = create_room(alice, "Secret", is_private=True)
    Membership.objects.create(room=room, user=bob)
    client.force_login(charlie)
    assert client.get(f"/rooms/{room.slug}/").status_code == 404
    assert client.post(f"/rooms/{room.slug}/join/").status_code == 404
    assert not Membership.objects.filter(user=charlie).exists()
    client.force_login(bob)
    r = client.get(f"/rooms/{room.slug}/")
    assert r.status_code == 200 and 'id="members-panel"' not in r.content.decode()
    client.force_login(alice)
    r = client.get(f"/rooms/{room.slug}/")
    assert r.status_code == 200 and 'id="members-panel"' in r.content.decode()


def test_an_unknown_slug_is_a_404(client, alice):
    client.force_login(alice)
    assert client.get("/rooms/nosuch/").status_code == 404
    assert client.post("/rooms/nosuch/join/").status_code == 404
    assert client.post("/rooms/nosuch/members/", {"username": "bob"}).status_code == 404


def test_the_owner_adds_and_removes_members(client, alice, bob, charlie):
    room = create_room(alice, "Secret", is_private=True)
    client.force_login(alice)
    r = client.post(f"/rooms/{room.slug}/members/", {"username": "bob"}, follow=True)
    assert r.status_code == 200 and "bob can now enter" in r.content.decode()
    assert list(room.memberships.values_list("user__username", flat=True)) == ["bob"]
    assert f'action="/rooms/{room.slug}/members/bob/remove/"' in r.content.decode()
    client.force_login(bob)
    assert client.get(f"/rooms/{room.slug}/").status_code == 200
    client.force_login(alice)
    r = client.post(f"/rooms/{room.slug}/members/bob/remove/", follow=True)
    assert r.status_code == 200 and "bob was removed" in r.content.decode()
    assert not room.memberships.exists()
    client.force_login(bob)
    assert client.get(f"/rooms/{room.slug}/").status_code == 404


def test_an_unknown_username_is_a_message_not_an_error(client, alice):
    room = create_room(alice, "Secret", is_private=True)
    client.force_login(alice)
    for username in ("nobody", "", "<b>x</b>", "x\x00y"):
        r = client.post(f"/rooms/{room.slug}/members/", {"username": username}, follow=True)
        assert r.status_code == 200
        body = r.content.decode()
        assert "There is no user called" in body or "Enter a username" in body
        assert "<b>x</b>" not in body
    assert client.post(f"/rooms/{room.slug}/members/nobody/remove/", follow=True).status_code == 200
    r = client.post(f"/rooms/{room.slug}/members/", {"username": "alice"}, follow=True)
    assert "you are always in it" in r.content.decode()
    assert not room.memberships.exists()


def test_only_the_owner_manages_members(client, alice, bob, charlie):
    room = create_room(alice, "Secret", is_private=True)
    Membership.objects.create(room=room, user=bob)
    for user in (bob, charlie):
        client.force_login(user)
        assert client.post(f"/rooms/{room.slug}/members/", {"username": "charlie"}).status_code == 404
        assert client.post(f"/rooms/{room.slug}/members/bob/remove/").status_code == 404
    assert list(room.memberships.values_list("user__username", flat=True)) == ["bob"]
    client.force_login(alice)
    assert client.get(f"/rooms/{room.slug}/members/").status_code == 405


def test_posts_without_a_csrf_token_are_refused(alice, bob):
    room = create_room(alice, "Secret", is_private=True)
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.post("/rooms/", {"title": "x", "model": "test:"}).status_code == 403
    assert client.post(f"/rooms/{room.slug}/members/", {"username": "bob"}).status_code == 403
    Membership.objects.create(room=room, user=bob)
    assert client.post(f"/rooms/{room.slug}/members/bob/remove/").status_code == 403
    client.force_login(bob)
    open_room = create_room(alice, "Open")
    assert client.post(f"/rooms/{open_room.slug}/join/").status_code == 403
    assert Room.objects.count() == 2 and Membership.objects.count() == 1


def test_titles_are_escaped(client, alice):
    room = create_room(alice, "<script>alert(1)</script>")
    client.force_login(alice)
    for url in ("/rooms/", f"/rooms/{room.slug}/"):
        body = client.get(url).content.decode()
        assert "<script>alert(1)</script>" not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    # In the page data too: json_script escapes < and >, so the title cannot end the script element.
    body = client.get(f"/rooms/{room.slug}/").content.decode()
    assert "\\u003Cscript\\u003Ealert(1)\\u003C/script\\u003E" in body


def test_the_header_links_to_rooms(client, alice):
    client.force_login(alice)
    assert 'href="/rooms/"' in client.get("/chat/").content.decode()


def test_the_admin_lists_rooms(client, alice):
    from django.contrib.auth import get_user_model

    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw-root")
    room = create_room(alice, "Admin me")
    Membership.objects.create(room=room, user=admin)
    client.force_login(admin)
    assert "Admin me" in client.get("/admin/rooms/room/?q=admin").content.decode()
    assert client.get(f"/admin/rooms/room/{room.id}/change/").status_code == 200
    assert client.get("/admin/rooms/membership/").status_code == 200


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_page_logic_under_node():
    result = subprocess.run(["node", "--test", str(ROOT / "tests" / "js")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
