"""An outsider (logged in, no permissions, no identity, owns nothing) is refused on every page.

The URL list is walked from the resolver, so a page added later is covered without editing this file.
"""

from __future__ import annotations

import re

import pytest
from django.contrib import admin
from django.urls import URLPattern, URLResolver, get_resolver

from tests.factories import ConnectorFactory, GrantFactory, IdentityFactory

pytestmark = pytest.mark.django_db

# Pages every logged-in person may open: their own account and security settings, and logging out.
PUBLIC_PREFIXES = ("/accounts/", "/static/", "/api/v1/openapi", "/admin/logout/")
# gateway: OAuth protocol endpoints answer any client by design (tests/gateway covers their refusals).
PUBLIC_PREFIXES += ("/oauth/", "/.well-known/oauth-authorization-server")
# Load balancers' probes answer anyone, with no detail (tests/ops/test_health.py).
PUBLIC_PREFIXES += ("/health/live", "/health/ready")
# Discovery documents of the open standards, public by design: AuthZEN metadata, SSF metadata, its JWKS.
PUBLIC_PREFIXES += ("/.well-known/authzen-configuration", "/.well-known/ssf-configuration", "/ssf/jwks.json")
REFUSED = {401, 403, 404}


def _walk(patterns, prefix=""):
    for p in patterns:
        route = prefix + str(p.pattern)
        if isinstance(p, URLResolver):
            yield from _walk(p.url_patterns, route)
        elif isinstance(p, URLPattern):
            yield route, p


def _concrete(route: str, pk: int) -> str:
    route = route.lstrip("^").rstrip("$").replace("\\Z", "").replace("\\/", "/")
    route = re.sub(r"<int:\w+>|<path:object_id>", str(pk), route)
    route = re.sub(r"<(?:str|slug|uuid|path):?(\w*)>", "x", route)
    route = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: str(pk) if "id" in m.group(1) else "x", route)
    return "/" + route


def _urls(pk: int) -> list[str]:
    urls = set()
    for route, _pattern in _walk(get_resolver().url_patterns):
        url = _concrete(route, pk)
        if "(" in url or "[" in url or url.startswith(PUBLIC_PREFIXES):
            continue
        urls.add(url)
    return sorted(urls)


def test_the_url_walk_finds_the_pages():
    urls = _urls(1)
    assert "/" in urls
    assert "/admin/connectors/connector/" in urls
    assert len(urls) > 50


def test_outsider_is_refused_everywhere(client, outsider):
    connector = ConnectorFactory()
    GrantFactory(connector=connector, identity=IdentityFactory())
    client.force_login(outsider)
    allowed = []
    for url in _urls(connector.pk):
        get = client.get(url)
        if get.status_code not in REFUSED | {405}:
            allowed.append(("GET", url, get.status_code))
        # A page that only answers GET may say 405 to a POST: the GET above was refused.
        post = client.post(url, {})
        if post.status_code not in REFUSED | {405}:
            allowed.append(("POST", url, post.status_code))
    assert not allowed, f"outsider was not refused: {allowed}"


def test_admin_models_are_all_refused_to_the_outsider(client, outsider):
    client.force_login(outsider)
    for model in admin.site._registry:
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        assert client.get(url).status_code == 403, url
