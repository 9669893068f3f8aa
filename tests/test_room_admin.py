"""The rooms admin: its pages run a fixed number of queries however many members a room has."""

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from rooms.models import Membership, create_room


def queries_of(client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
        assert response.status_code == 200
    return len(queries)


def room_with_members(owner, title: str, n: int):
    room = create_room(owner, title, is_private=True)
    users = get_user_model().objects.bulk_create(
        [get_user_model()(username=f"{title[:10]}-{i}") for i in range(n)])
    Membership.objects.bulk_create([Membership(room=room, user=user) for user in users])
    return room


@pytest.mark.django_db
def test_room_pages_run_the_same_queries_for_5_and_200_members(admin_client, alice):
    small, large = room_with_members(alice, "small", 5), room_with_members(alice, "large", 200)
    counts = {}
    for room in (small, large, small):  # the first round warms Django's caches
        counts[room.title] = [
            queries_of(admin_client, "/admin/rooms/room/"),
            queries_of(admin_client, f"/admin/rooms/room/{room.id}/change/"),
            queries_of(admin_client, f"/admin/rooms/membership/?room__id__exact={room.id}"),
        ]
    assert counts["small"] == counts["large"], counts
    page = admin_client.get(f"/admin/rooms/room/{large.id}/change/").content.decode()
    assert "large-199" in page  # every member is listed, by name
