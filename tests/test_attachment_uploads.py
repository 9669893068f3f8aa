"""Uploading and downloading attachments over HTTP, through the whole middleware stack (CSRF included).

A refused upload answers `{error: {code, message}}` and stores nothing; a file is served to its
owner only, never as HTML.
"""

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from chat.models import Attachment, Conversation, Message
from tests.attachment_files import ELF, LATIN1, PDF, PNG

pytestmark = pytest.mark.django_db


def client_of(user, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    if user is not None:
        client.force_login(user)
    return client


def upload(client: Client, conversation, name: str, data: bytes, **extra):
    return client.post(f"/chat/{conversation.id}/attachments/", {"file": SimpleUploadedFile(name, data)}, **extra)


def assert_refused(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code and response.json()["error"]["message"]
    # Whatever the reason, nothing was stored.
    assert Attachment.objects.count() == 0


def test_a_text_file_is_stored_unsent_and_described(alice, conversation):
    response = upload(client_of(alice), conversation, "notes.md", "# Notes\nh\u00e9llo\n".encode())
    assert response.status_code == 201
    body = response.json()
    stored = Attachment.objects.get()
    assert body == {"id": str(stored.id), "name": "notes.md", "content_type": "text/plain", "size": 15,
                    "url": f"/attachments/{stored.id}/"}
    assert stored.message is None and stored.owner == alice and bytes(stored.data) == "# Notes\nh\u00e9llo\n".encode()


def test_an_image_is_typed_by_its_bytes_not_its_name_or_header(alice, conversation):
    client = client_of(alice)
    response = client.post(f"/chat/{conversation.id}/attachments/",
                           {"file": SimpleUploadedFile("holiday.txt", PNG, content_type="text/html")})
    assert response.status_code == 201 and response.json()["content_type"] == "image/png"


@pytest.mark.parametrize("name, data", [
    ("report.pdf", PDF),  # a type we do not take
    ("program.exe", ELF),
    ("innocent.txt", ELF),  # a binary renamed as text: NUL bytes
    ("notes.txt", LATIN1),  # text, but not UTF-8
    ("nul.md", b"text with a \x00 NUL"),
    ("noextension", b"plain words"),
])
def test_a_file_of_the_wrong_type_is_refused_with_415(alice, conversation, name, data):
    assert_refused(upload(client_of(alice), conversation, name, data), 415, "unsupported_type")


def test_an_oversized_text_file_is_refused_with_413(alice, conversation, settings):
    settings.NOUS_ATTACHMENT_MAX_TEXT_BYTES = 1024
    assert upload(client_of(alice), conversation, "fits.txt", b"a" * 1024).status_code == 201
    Attachment.objects.all().delete()
    assert_refused(upload(client_of(alice), conversation, "big.txt", b"a" * 1025), 413, "too_large")


def test_an_oversized_image_is_refused_with_413(alice, conversation, settings):
    settings.NOUS_ATTACHMENT_MAX_IMAGE_BYTES = len(PNG) - 1
    assert_refused(upload(client_of(alice), conversation, "pic.png", PNG), 413, "too_large")


def test_a_body_far_over_the_limit_is_refused_before_it_is_read(alice, conversation, settings):
    settings.NOUS_ATTACHMENT_MAX_TEXT_BYTES = settings.NOUS_ATTACHMENT_MAX_IMAGE_BYTES = 1024
    assert_refused(upload(client_of(alice), conversation, "huge.txt", b"a" * 200_000), 413, "too_large")


def test_someone_elses_conversation_is_a_404(bob, conversation):
    assert_refused(upload(client_of(bob), conversation, "notes.txt", b"hello"), 404, "not_found")


def test_a_room_conversation_takes_no_uploads(alice):
    room_conversation = Conversation.objects.create(owner=alice, kind=Conversation.Kind.ROOM)
    assert_refused(upload(client_of(alice), room_conversation, "notes.txt", b"hello"), 404, "not_found")


def test_not_logged_in_is_refused(conversation):
    assert_refused(upload(client_of(None), conversation, "notes.txt", b"hello"), 401, "forbidden")


def test_an_upload_without_the_csrf_token_is_refused(alice, conversation):
    response = upload(client_of(alice, csrf=True), conversation, "notes.txt", b"hello")
    assert response.status_code == 403
    assert Attachment.objects.count() == 0


def test_an_upload_with_the_csrf_token_is_taken(alice, conversation):
    client = client_of(alice, csrf=True)
    client.get(f"/chat/{conversation.id}/")  # the page sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    assert upload(client, conversation, "notes.txt", b"hello", headers={"X-CSRFToken": token}).status_code == 201


def test_no_more_unsent_uploads_than_one_message_takes(alice, conversation, settings):
    settings.NOUS_ATTACHMENTS_PER_MESSAGE = 2
    client = client_of(alice)
    for n in range(2):
        assert upload(client, conversation, f"f{n}.txt", b"hello").status_code == 201
    response = upload(client, conversation, "f3.txt", b"hello")
    assert response.status_code == 400 and response.json()["error"]["code"] == "too_many"
    assert Attachment.objects.count() == 2


def test_the_owner_downloads_a_text_file_as_a_download_never_as_html(alice, conversation):
    client = client_of(alice)
    page = b"<html><script>alert(1)</script></html>"
    url = upload(client, conversation, "page.html", page).json()["url"]
    response = client.get(url)
    assert response.status_code == 200 and response.content == page
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response["Content-Disposition"].startswith("attachment;") and "page.html" in response["Content-Disposition"]
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Security-Policy"].startswith("sandbox")


def test_the_owner_sees_an_image_inline_with_its_sniffed_type(alice, conversation):
    client = client_of(alice)
    url = upload(client, conversation, "pic.png", PNG).json()["url"]
    response = client.get(url)
    assert response.status_code == 200 and response.content == PNG
    assert response["Content-Type"] == "image/png" and response["Content-Disposition"].startswith("inline;")
    assert response["X-Content-Type-Options"] == "nosniff"


def test_another_user_or_nobody_gets_a_404(alice, bob, conversation):
    url = upload(client_of(alice), conversation, "notes.txt", b"secret").json()["url"]
    for client in (client_of(bob), client_of(None)):
        response = client.get(url)
        assert response.status_code == 404 and b"secret" not in response.content


def test_an_unsent_upload_can_be_removed_but_a_sent_one_cannot(alice, bob, conversation):
    client = client_of(alice)
    first = upload(client, conversation, "a.txt", b"a").json()
    second = upload(client, conversation, "b.txt", b"b").json()
    assert client_of(bob).delete(first["url"]).status_code == 404
    assert client.delete(first["url"]).status_code == 204
    assert not Attachment.objects.filter(id=first["id"]).exists()
    message = Message.objects.create(conversation=conversation, role="user", content="hi", author=alice)
    Attachment.objects.filter(id=second["id"]).update(message=message)
    assert client.delete(second["url"]).status_code == 404
    assert client.get(second["url"]).status_code == 200


@pytest.mark.django_db(transaction=True)  # the command works on its own database threads
def test_cleanup_agents_deletes_uploads_left_unsent_for_a_day(alice, conversation):
    client = client_of(alice)
    old, recent, sent = (upload(client, conversation, f"{n}.txt", b"x").json()["id"] for n in ("old", "recent", "sent"))
    message = Message.objects.create(conversation=conversation, role="user", content="hi", author=alice)
    Attachment.objects.filter(id=sent).update(message=message)
    Attachment.objects.filter(id__in=[old, sent]).update(created_at=timezone.now() - timedelta(days=2))
    call_command("cleanup_agents", stdout=open("/dev/null", "w"))
    assert set(Attachment.objects.values_list("id", flat=True).iterator()) == {Attachment.objects.get(id=recent).id,
                                                                                 Attachment.objects.get(id=sent).id}
