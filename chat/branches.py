"""A chat's branches: the tree of its messages (`Message.parent`) and the selected path (`on_branch`).

The tree's nodes are user and assistant messages; a run's tool and error messages follow their
answer (same `run_id`). Ids increase along every root-to-leaf path, so the newest message under
a node is a leaf, and every id-ordered query reads the selected branch with `on_branch=True`.
The selected path always ends at a leaf, so a new send simply goes under the newest message on it.
Rooms stay linear: their messages have no parent and are all on the branch.

Every change of the branches locks the conversation's row for the rest of its transaction, and
takes that lock *after* inserting its run, if it has one: the insert may wait for a run that is
ending, and `finish_run` (and its one statement, `chat.runs.finish_sql`) updates the conversation's
row after ending its run, so the other order could deadlock. A branch switch takes the lock, then
refuses while a run is active.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable

from django.db import connection
from django.db.models import Q

from chat.models import Conversation, Message

NODE_ROLES = (Message.Role.USER, Message.Role.ASSISTANT)


class Tree:
    """A conversation's nodes, read in one query: id -> parent id, and each answer's run."""

    def __init__(self, conversation_id: Any) -> None:
        self.parent: dict[int, int | None] = {}
        self.run_of: dict[int, Any] = {}
        self.children: dict[int | None, list[int]] = defaultdict(list)
        rows = Message.objects.filter(conversation_id=conversation_id, role__in=NODE_ROLES).order_by("id")
        for id_, parent_id, run_id in rows.values_list("id", "parent_id", "run_id"):
            self.parent[id_], self.run_of[id_] = parent_id, run_id
            self.children[parent_id].append(id_)

    def path_to(self, leaf_id: int) -> list[int]:
        """The nodes from the root down to `leaf_id`."""
        path, node = [], leaf_id
        while node is not None and node in self.parent:
            path.append(node)
            node = self.parent[node]
        return path[::-1]

    def newest_leaf_under(self, node_id: int) -> int:
        """The newest message in `node_id`'s subtree: the leaf of the branch last written there."""
        newest, stack = node_id, [node_id]
        while stack:
            for child in self.children.get(stack.pop(), ()):
                newest = max(newest, child)
                stack.append(child)
        return newest


def select_path(conversation_id: Any, leaf_id: int, tree: Tree | None = None) -> None:
    """Mark the path to `leaf_id` (and its runs' tool and error messages) as the selected branch.

    Run inside the transaction that changed the tree, with the conversation locked.
    """
    tree = tree or Tree(conversation_id)
    path = tree.path_to(leaf_id)
    runs = [tree.run_of[n] for n in path if tree.run_of[n] is not None]
    nodes = Q(role__in=NODE_ROLES)
    on_path = (nodes & Q(id__in=path)) | (~nodes & Q(run_id__in=runs))
    keeps_flag = ~nodes & Q(run__isnull=True)  # a message outside the tree and its runs
    mine = Message.objects.filter(conversation_id=conversation_id)
    mine.filter(on_branch=True).exclude(on_path).exclude(keeps_flag).update(on_branch=False)
    mine.filter(on_path, on_branch=False).update(on_branch=True)


def lock_conversation(conversation_id: Any) -> None:
    """Hold the conversation's row until the transaction ends (a no-op on SQLite, one writer anyway)."""
    list(Conversation.objects.select_for_update().filter(id=conversation_id).values_list("id", flat=True))


def attach_sql(conversation_id: Any, client_id: str) -> tuple[str, list[Any]]:
    """The statement that puts the message just sent as `client_id` under the end of the selected
    branch, `RETURNING parent_id`: run it with the conversation locked (one statement, since a send
    is on the path to the first token)."""
    table = Message._meta.db_table
    roles = tuple(str(role) for role in NODE_ROLES)
    marks = ", ".join(["%s"] * len(roles))
    conversation = Message._meta.get_field("conversation").get_db_prep_value(conversation_id, connection)
    sql = (f"UPDATE {table} AS sent SET parent_id = (SELECT leaf.id FROM {table} AS leaf WHERE leaf.conversation_id = %s"
           f" AND leaf.on_branch AND leaf.role IN ({marks}) AND leaf.id < sent.id ORDER BY leaf.id DESC LIMIT 1)"
           " WHERE sent.conversation_id = %s AND sent.client_id = %s RETURNING parent_id")
    return sql, [conversation, *roles, conversation, client_id]


def attach_to_leaf(conversation_id: Any, message: Message) -> None:
    """Put a just sent `message` under the end of the selected branch (conversation locked)."""
    sql, params = attach_sql(conversation_id, message.client_id)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        message.parent_id = cursor.fetchone()[0]


def annotate(conversation_id: Any, messages: Iterable[dict[str, Any]]) -> None:
    """Fill in `branch` (`{index, count, siblings}`) of the messages that have siblings: one query."""
    nodes = [m for m in messages if m["role"] in NODE_ROLES]
    if not nodes:
        return
    parents = {int(m["parent_id"]) for m in nodes if m["parent_id"]}
    wanted = Q(parent_id__in=parents)
    if any(m["parent_id"] is None and m["role"] == Message.Role.USER for m in nodes):
        wanted |= Q(parent__isnull=True, role=Message.Role.USER)  # several first messages (edits of it)
    groups: dict[int | None, list[str]] = defaultdict(list)
    rows = Message.objects.filter(wanted, conversation_id=conversation_id, role__in=NODE_ROLES).order_by("id")
    for parent_id, id_ in rows.values_list("parent_id", "id"):
        groups[parent_id].append(str(id_))
    for m in nodes:
        m["branch"] = branch_of(m["id"], groups.get(int(m["parent_id"]) if m["parent_id"] else None, []))


def branch_of(message_id: str, siblings: list[str]) -> dict[str, Any] | None:
    """A message's `branch` among its siblings (itself included, oldest first); None if it has none."""
    if len(siblings) > 1 and message_id in siblings:
        return {"index": siblings.index(message_id) + 1, "count": len(siblings), "siblings": siblings}
    return None
