"""The consent page: django-oauth-toolkit's authorization endpoint, bound to one connector endpoint.

Lanyard's additions are the RFC 8707 binding (exactly one ``resource``, naming a registered
connector endpoint), the connector's facts on the page (owner, scopes, risk) and the decision point:
the page is shown and the code issued only when the PDP permits the person on that connector.
"""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import render
from oauth2_provider.views import AuthorizationView

from . import services


class ConsentView(AuthorizationView):
    template_name = "gateway/consent.html"

    def _refuse(self, message: str, status: int = 400) -> HttpResponse:
        # Shown to the person, not redirected: a bad resource may come from any client.
        return render(self.request, "gateway/refused.html", {"message": message}, status=status)

    def _endpoint(self, resources: list[str]):
        if len(resources) != 1:
            return None, "Ask for exactly one connector endpoint (one RFC 8707 resource parameter)."
        endpoint = services.endpoint_for_resource(resources[0])
        if endpoint is None:
            return None, "That resource is not a connector endpoint of this gateway."
        return endpoint, ""

    def _check(self, resources: list[str]):
        endpoint, problem = self._endpoint(resources)
        if endpoint is None:
            return None, self._refuse(problem)
        decision = services.consent_decision(user=self.request.user, endpoint=endpoint)
        if not decision.allowed:
            return None, self._refuse(decision.reason or "Access to this connector is not permitted.", 403)
        return endpoint, None

    def get(self, request, *args, **kwargs):
        endpoint, refused = self._check(request.GET.getlist("resource"))
        if refused is not None:
            return refused
        self.endpoint = endpoint
        return super().get(request, *args, **kwargs)

    def form_valid(self, form):
        # The hidden field can be tampered with: bind and decide again on the posted value.
        endpoint, refused = self._check((form.cleaned_data.get("resource") or "").split())
        if refused is not None:
            return refused
        return super().form_valid(form)

    def form_invalid(self, form):
        return self._refuse("The authorization request is incomplete; start again from your MCP client.")

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        endpoint = getattr(self, "endpoint", None)
        if endpoint is not None:
            context["endpoint"] = endpoint
            context["connector"] = endpoint.connector
            context["endpoint_url"] = services.endpoint_url(endpoint.slug)
        return context
