from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from chat.attachment_views import attachment
from chat.sharing import shared_page
from nous_site import health
from nous_site.metrics import metrics_view

urlpatterns = [
    path("", RedirectView.as_view(url="/chat/", permanent=False)),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("chat/", include("chat.urls")),
    path("rooms/", include("rooms.urls")),
    path("contact/", include("contact.urls")),
    path("s/<str:token>/", shared_page, name="shared"),
    path("attachments/<uuid:attachment_id>/", attachment, name="attachment"),
]
