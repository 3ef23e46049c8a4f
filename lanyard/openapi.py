"""The project's one OpenAPI 3.1 document: every installed app's ``openapi`` module, merged.

The vocabulary (``Operation``, ``Response``, ...) and the builder live in ``httpapi.openapi``, below
every app; this module only collects what the apps declare and serves the result at ``/api/v1/openapi.json``.
"""

from __future__ import annotations

import functools
import json
from importlib import import_module
from typing import Any

from django.apps import apps
from django.http import HttpRequest, HttpResponse
from django.utils.module_loading import module_has_submodule
from django.views.decorators.http import require_GET

from httpapi.openapi import SERVER, Operation, Response, Tag, build

__all__ = ["SERVER", "declared", "document", "document_bytes", "view"]


SELF = Operation(
    "get",
    "/openapi.json",
    "getOpenApi",
    "This document",
    description="The OpenAPI 3.1 document of every Lanyard API, generated from the types the endpoints use.",
    responses={200: Response("OpenAPI 3.1 document.", dict[str, Any])},
)


def declared() -> tuple[list[Operation], list[Tag]]:
    """Return the operations and tags every installed app declares in its ``openapi`` module, and this one."""
    operations, tags = [SELF], []
    for config in apps.get_app_configs():
        if module_has_submodule(config.module, "openapi"):
            module = import_module(f"{config.name}.openapi")
            operations += getattr(module, "OPERATIONS", [])
            tags += getattr(module, "TAGS", [])
    return operations, tags


@functools.cache
def document_bytes() -> bytes:
    operations, tags = declared()
    return json.dumps(build(operations, tags), indent=2).encode()


def document() -> dict[str, Any]:
    """Return the project's OpenAPI document."""
    return json.loads(document_bytes())


@require_GET
def view(request: HttpRequest) -> HttpResponse:
    """Serve the OpenAPI 3.1 document of every Lanyard API."""
    return HttpResponse(document_bytes(), content_type="application/json")
