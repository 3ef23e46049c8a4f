from django.urls import path

from . import api

urlpatterns = [
    path("events", api.events, name="api-events"),
]
