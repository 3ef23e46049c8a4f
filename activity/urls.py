from django.urls import path

from . import views

app_name = "audit"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("connectors/", views.connectors, name="connectors"),
    path("connectors/<int:pk>/activity/", views.connector_activity, name="connector_activity"),
    path(
        "connectors/<int:pk>/activity/export.<str:fmt>",
        views.connector_activity_export,
        name="connector_activity_export",
    ),
    path("identities/<int:pk>/", views.identity_detail, name="identity"),
    path("identities/<int:pk>/export.<str:fmt>", views.identity_export, name="identity_export"),
    path("events/", views.events, name="events"),
    path("events/export.<str:fmt>", views.events_export, name="events_export"),
]
