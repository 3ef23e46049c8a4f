from allauth.account.decorators import secure_admin_login
from allauth.socialaccount.models import SocialApp, SocialToken
from django.contrib import admin
from django.urls import include, path
from oauth2_provider.views import OAuthServerMetadataView

from access import api as access_api
from governance import views
from signals import stream_api as ssf_transmitter
from telemetry.web import GroupHealthView, LivenessView, metrics_view

from . import openapi, ops

admin.site.site_header = "Lanyard administration"
admin.site.site_title = "Lanyard"
admin.site.index_title = "AI connector register"
# The admin logs in through allauth, so its rate limits and MFA apply there too.
admin.autodiscover()
admin.site.login = secure_admin_login(admin.site.login)
# Sign-in providers come from the environment (LANYARD_OIDC_*): allauth's social-application admin
# would keep client secrets in the database in plain text, and its token admin shows nothing (tokens
# are not stored). The social accounts themselves (who is linked to which IdP subject) stay visible.
admin.site.unregister(SocialApp)
admin.site.unregister(SocialToken)

urlpatterns = [
    path("", views.home, name="home"),
    path("", include("governance.portal_urls")),
    path("attest/", include("governance.attestation_urls")),
    path("audit/", include("activity.urls")),
    # One document for every app's API, built from the operations each app declares.
    path("api/v1/openapi.json", openapi.view, name="api-openapi"),
    path("api/v1/", include("activity.api_urls")),
    path("accounts/", include("allauth.urls")),
    path("admin/", admin.site.urls),
    # gateway: the OAuth authorization server (RFC 8414 metadata at the root, endpoints under /oauth/)
    path(
        ".well-known/oauth-authorization-server",
        OAuthServerMetadataView.as_view(),
        name="oauth-authorization-server",
    ),
    path("oauth/", include("gateway.oauth_urls")),
    # The AuthZEN 1.0 decision point (access app): its paths are the specification's.
    path(".well-known/authzen-configuration", access_api.metadata, name="authzen-configuration"),
    path("access/v1/", include("access.urls")),
    # Shared Signals (issue 15): the receiver (RFC 8935 push from the IdPs) and the transmitter
    path(".well-known/ssf-configuration", ssf_transmitter.configuration, name="ssf-configuration"),
    path("ssf/", include("signals.urls")),
    # Operations (issue 17): probes for load balancers, the IAM health page, Prometheus.
    path("health/live", LivenessView.as_view(), name="health-live"),
    path("health/ready", GroupHealthView.as_view(), name="health-ready"),
    path("ops/health/", ops.OperationsHealthView.as_view(), name="ops-health"),
    path("metrics", metrics_view, name="metrics"),
]
