from django.urls import path

from contact import views

app_name = "contact"
urlpatterns = [
    path("", views.contact_page, name="form"),
    path("thanks/", views.thanks_page, name="thanks"),
    path("suggest/", views.suggest_view, name="suggest"),
]
