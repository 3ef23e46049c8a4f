from django.urls import path

from . import views

app_name = "signals"

urlpatterns = [
    path("receive/<uuid:stream_id>", views.receive_push, name="receive"),
]
