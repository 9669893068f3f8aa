"""Branches: `Message.parent` and `Message.on_branch`; the messages of existing chats are linked
into one branch (each user or assistant message under the one before it), all on the branch."""

import django.db.models.deletion
from django.db import migrations, models

BATCH = 500
NODE_ROLES = ("user", "assistant")


def link_existing_chats(apps, schema_editor):
    Conversation = apps.get_model("chat", "Conversation")
    Message = apps.get_model("chat", "Message")
    for conversation_id in Conversation.objects.filter(kind="chat").values_list("id", flat=True).iterator():
        previous, changed = None, []
        for message in Message.objects.filter(conversation_id=conversation_id, role__in=NODE_ROLES).order_by("id").only("id"):
            if previous is not None:
                message.parent_id = previous
                changed.append(message)
            previous = message.id
        Message.objects.bulk_update(changed, ["parent"], batch_size=BATCH)


class Migration(migrations.Migration):
    dependencies = [("chat", "0009_fallback_models")]

    operations = [
        migrations.AddField(
            model_name="message",
            name="parent",
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+",
                                    to="chat.message"),
        ),
        migrations.AddField(model_name="message", name="on_branch", field=models.BooleanField(default=True)),
        migrations.AddIndex(
            model_name="message",
            index=models.Index(fields=["conversation", "on_branch", "-id"], name="message_branch_page"),
        ),
        migrations.RunPython(link_existing_chats, migrations.RunPython.noop),
    ]
