from django.urls import path

from rooms import views

app_name = "rooms"
urlpatterns = [
    path("", views.room_list, name="list"),
    path("<slug:slug>/", views.room_page, name="room"),
    path("<slug:slug>/join/", views.join_room, name="join"),
    path("<slug:slug>/members/", views.add_member, name="add_member"),
    path("<slug:slug>/members/<str:username>/remove/", views.remove_member, name="remove_member"),
]
