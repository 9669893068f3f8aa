"""The full-text index of message content, on PostgreSQL only (SQLite searches with LIKE)."""

from django.db import migrations

# chat.search.PostgresSearch: `to_tsvector('english', COALESCE(content, '')) @@ websearch_to_tsquery('english', ?)`
# over a user's messages. The expression must stay exactly the one Django's SearchVector writes,
# or the planner does not use the index. CONCURRENTLY: building it does not block new messages.
CREATE = (
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS message_content_search ON chat_message "
    "USING gin (to_tsvector('english'::regconfig, COALESCE(content, ''::text)))"
)
DROP = "DROP INDEX CONCURRENTLY IF EXISTS message_content_search"


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("chat", "0006_provenance"),
    ]

    operations = [
        migrations.RunPython(create_index, drop_index, elidable=False),
    ]
