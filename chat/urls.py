from django.urls import path

from chat import attachment_views, views
from chat.exports import export_json, export_md, import_conversation
from chat.search import search_page
from chat.sharing import create_link, revoke_link

app_name = "chat"
urlpatterns = [
    path("", views.conversation_list, name="list"),
    path("search/", search_page, name="search"),
    path("<uuid:conversation_id>/", views.conversation_page, name="conversation"),
    path("<uuid:conversation_id>/rename/", views.rename_conversation, name="rename"),
    path("<uuid:conversation_id>/delete/", views.delete_conversation, name="delete"),
    path("<uuid:conversation_id>/attachments/", attachment_views.upload, name="upload"),
    path("import/", import_conversation, name="import"),
    path("<uuid:conversation_id>/export.md", export_md, name="export_md"),
    path("<uuid:conversation_id>/export.json", export_json, name="export_json"),
    path("<uuid:conversation_id>/share/", create_link, name="share"),
    path("<uuid:conversation_id>/share/<str:token>/revoke/", revoke_link, name="revoke_share"),
]
