"""django-oauth-toolkit's endpoints under /oauth/, with Lanyard's consent view as the authorize page.

Only what the gateway needs is routed: authorize, token, revoke, introspect, registration (RFC
7591/7592). The RFC 8414 metadata is mounted at the server root (lanyard/urls.py).
"""

from django.urls import path
from oauth2_provider import views as dot

from .introspection import GatewayIntrospectView
from .views import ConsentView

app_name = "oauth2_provider"

urlpatterns = [
    path("authorize/", ConsentView.as_view(), name="authorize"),
    path("token/", dot.TokenView.as_view(), name="token"),
    path("revoke_token/", dot.RevokeTokenView.as_view(), name="revoke-token"),
    path("introspect/", GatewayIntrospectView.as_view(), name="introspect"),
    path("register/", dot.DynamicClientRegistrationView.as_view(), name="dcr-register"),
    path(
        "register/<str:client_id>/",
        dot.DynamicClientRegistrationManagementView.as_view(),
        name="dcr-register-management",
    ),
    path(
        ".well-known/oauth-authorization-server",
        dot.OAuthServerMetadataView.as_view(),
        name="oauth-server-metadata",
    ),
]
