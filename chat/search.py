"""Search over a user's own chat conversations, and its page.

PostgreSQL: full-text search (`websearch_to_tsquery`, stemmed English) with `ts_headline` for the
snippet. Elsewhere (SQLite): every word as a case-insensitive substring, the snippet cut in Python.
Either way the snippet is escaped message text in which only our <mark> tags are HTML.
"""

from __future__ import annotations

import html
import re
import secrets
from typing import Protocol

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import QuerySet, Value
from django.db.models.functions import Replace
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.safestring import SafeString, mark_safe

from chat.models import Conversation, Message

MAX_QUERY_CHARS = 200
MAX_WORDS = 10  # SQLite: one LIKE per word
RESULTS_PER_PAGE = 20
SNIPPET_CHARS = 220  # SQLite: the window of text shown around the first match
SNIPPET_LEAD_CHARS = 60  # ... of which before the match
SEARCH_CONFIG = "english"  # the GIN index (migration 0006) is built with the same configuration
SEARCHED_ROLES = (Message.Role.USER, Message.Role.ASSISTANT)  # tool calls and errors are not conversation text


def clean_query(raw: str) -> str:
    # NUL is the one character PostgreSQL refuses in a string; a URL can still carry it (%00).
    return " ".join(raw.replace("\x00", "").split())[:MAX_QUERY_CHARS]


class Backend(Protocol):
    def matching(self, messages: QuerySet[Message], query: str) -> QuerySet[Message]: ...

    def snippet(self, message: Message, query: str) -> SafeString: ...


class PostgresSearch:
    def __init__(self) -> None:
        # Markers no message can contain, so that after escaping only they become <mark> tags.
        nonce = secrets.token_hex(8)
        self.start, self.stop = f"[[{nonce}", f"{nonce}]]"

    def _query(self, query: str):
        from django.contrib.postgres.search import SearchQuery

        return SearchQuery(query, search_type="websearch", config=SEARCH_CONFIG)

    def matching(self, messages: QuerySet[Message], query: str) -> QuerySet[Message]:
        from django.contrib.postgres.search import SearchHeadline, SearchVector

        # The same expression as the index of migration 0006, or the index is not used.
        vector = SearchVector("content", config=SEARCH_CONFIG)
        # The headline is cut from the text escaped in SQL (ts_headline would drop what looks like
        # a tag, and keeps entities whole), so what comes back holds no markup but our markers.
        escaped = Replace(Replace(Replace("content", Value("&"), Value("&amp;")), Value("<"), Value("&lt;")), Value(">"), Value("&gt;"))
        return messages.alias(document=vector).filter(document=self._query(query)).annotate(
            headline=SearchHeadline(escaped, self._query(query), config=SEARCH_CONFIG, start_sel=self.start, stop_sel=self.stop,
                                    max_words=35, min_words=15, max_fragments=2, fragment_delimiter=" … ")
        )

    def snippet(self, message: Message, query: str) -> SafeString:
        text = " ".join(message.headline.split()).replace("<", "&lt;").replace(">", "&gt;")  # none expected; never markup
        return mark_safe(text.replace(self.start, "<mark>").replace(self.stop, "</mark>"))


class SimpleSearch:
    def _words(self, query: str) -> list[str]:
        words = list(dict.fromkeys(query.split()))[:MAX_WORDS]
        return sorted(words, key=len, reverse=True)  # the longest first, so "catalog" wins over "cat"

    def matching(self, messages: QuerySet[Message], query: str) -> QuerySet[Message]:
        for word in self._words(query):
            messages = messages.filter(content__icontains=word)
        return messages

    def snippet(self, message: Message, query: str) -> SafeString:
        words = self._words(query)
        text = message.content
        pattern = re.compile("|".join(re.escape(w) for w in words), re.IGNORECASE) if words else None
        first = pattern.search(text) if pattern else None
        start = max(0, first.start() - SNIPPET_LEAD_CHARS) if first else 0
        end = min(len(text), start + SNIPPET_CHARS)
        # Cut at spaces, not inside words (unless a single word is that long).
        if start > 0:
            space = text.find(" ", start, first.start() if first else end)
            start = space + 1 if space >= 0 else start
        if end < len(text):
            space = text.rfind(" ", max(start, first.end() if first else start), end)
            end = space if space > 0 else end
        window = text[start:end]
        parts, at = [], 0
        for m in pattern.finditer(window) if pattern else ():
            parts += [_plain(window[at:m.start()]), "<mark>", _plain(m.group()), "</mark>"]
            at = m.end()
        parts.append(_plain(window[at:]))
        marked = "".join(parts).strip().replace("</mark><mark>", "")
        return mark_safe(("… " if start > 0 else "") + marked + (" …" if end < len(text) else ""))


def _plain(text: str) -> str:
    return html.escape(re.sub(r"\s+", " ", text))


def search_backend() -> Backend:
    """The one place that picks the search by database."""
    return PostgresSearch() if connection.vendor == "postgresql" else SimpleSearch()


def search_messages(user, query: str, backend: Backend | None = None) -> QuerySet[Message]:
    """The messages of `user`'s own chat conversations (never a room's) matching `query`, newest first."""
    backend = backend or search_backend()
    own = Message.objects.filter(
        conversation__owner=user, conversation__kind=Conversation.Kind.CHAT, role__in=SEARCHED_ROLES, on_branch=True
    ).select_related("conversation", "author")
    return backend.matching(own, query).order_by("-id")


@login_required
def search_page(request: HttpRequest) -> HttpResponse:
    query = clean_query(request.GET.get("q", ""))
    page = None
    if query:
        backend = search_backend()
        page = Paginator(search_messages(request.user, query, backend), RESULTS_PER_PAGE).get_page(request.GET.get("page"))
        page.object_list = list(page.object_list)
        for message in page.object_list:
            message.snippet = backend.snippet(message, query)
    return render(request, "chat/search.html", {"query": query, "page": page})
