"""The IAM operations page: every health check, ready and Lanyard's own, as HTML or JSON."""

from __future__ import annotations

from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied

from governance import permissions
from telemetry import health
from telemetry.web import GroupHealthView


class OperationsHealthView(LoginRequiredMixin, GroupHealthView):
    """IAM staff see whether Lanyard is doing its job, each failing check with what to do."""

    template_name = "ops/health.html"

    async def dispatch(self, request, *args, **kwargs):
        user = await request.auser()
        if not user.is_authenticated:
            return self.handle_no_permission()
        if not await _is_iam(user):
            raise PermissionDenied("The operations page is for IAM staff.")
        return await super().dispatch(request, *args, **kwargs)

    def get_checks(self):
        yield from health.instantiate(health.READY)
        yield from health.instantiate(health.LANYARD)

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["rows"] = [
            {
                "title": health.title(r.check),
                "ok": r.error is None,
                "severity": "" if r.error is None else r.error.message_type,
                "message": "" if r.error is None else r.error.message,
                "took_ms": round(r.time_taken * 1000, 1),
            }
            for r in self.results
        ]
        return context


async def _is_iam(user) -> bool:
    from asgiref.sync import sync_to_async

    return await sync_to_async(permissions.is_iam)(user)
