from django.urls import path

from . import portal_views as views

app_name = "portal"

urlpatterns = [
    path("connectors/mine/", views.my_connectors, name="my_connectors"),
    path("connectors/shadow/", views.shadow, name="shadow"),
    path("connectors/<int:pk>/", views.connector_detail, name="connector_detail"),
    path("connectors/<int:pk>/revoke/", views.connector_revoke, name="connector_revoke"),
    path("connectors/<int:pk>/suspend/", views.connector_suspend, name="connector_suspend"),
    path("connectors/<int:pk>/owner/", views.connector_owner, name="connector_owner"),
    path("connectors/<int:pk>/sanction/", views.connector_sanction, name="connector_sanction"),
    path("connectors/<int:pk>/merge/", views.connector_merge, name="connector_merge"),
    path("paths/<int:pk>/split/", views.connector_split, name="connector_split"),
    path("inbox/", views.inbox, name="inbox"),
    path("security/", views.security, name="security"),
    path("grants/mine/", views.my_grants, name="my_grants"),
    path("grants/<int:pk>/revoke/", views.grant_revoke, name="grant_revoke"),
    path("requests/new/", views.request_new, name="request_new"),
    path("requests/<int:pk>/", views.request_detail, name="request_detail"),
    path("requests/<int:pk>/decide/", views.request_decide, name="request_decide"),
    path("requests/<int:pk>/provision/", views.request_provision, name="request_provision"),
    path("requests/<int:pk>/withdraw/", views.request_withdraw, name="request_withdraw"),
]
