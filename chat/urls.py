from django.urls import path

from chat import views
from chat.search import search_page

app_name = "chat"
urlpatterns = [
    path("", views.conversation_list, name="list"),
    path("search/", search_page, name="search"),
    path("<uuid:conversation_id>/", views.conversation_page, name="conversation"),
    path("<uuid:conversation_id>/rename/", views.rename_conversation, name="rename"),
    path("<uuid:conversation_id>/delete/", views.delete_conversation, name="delete"),
]
