"""`{% share_links conversation as links %}`: the active links of the owner's conversation page."""

from django import template
from django.urls import reverse

from chat.sharing import active_links

register = template.Library()


@register.simple_tag(takes_context=True)
def share_links(context, conversation) -> list[dict]:
    request = context["request"]
    return [
        {"token": link.token, "created_at": link.created_at,
         "url": request.build_absolute_uri(reverse("shared", args=[link.token]))}
        for link in active_links(conversation)
    ]
