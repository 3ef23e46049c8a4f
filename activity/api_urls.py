from django.urls import path

from . import api

urlpatterns = [
    path("events", api.events, name="api-events"),
    path("openapi.json", api.openapi, name="api-openapi"),
]
