"""Admin action helpers: apply a service to each selected row, optionally after asking for a reason.

Each app's admin actions live with the services they call; these helpers only report each refusal.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.admin import helpers
from django.template.response import TemplateResponse

from .models import IllegalTransition
from .queueing import DEFERRED_MESSAGE, deferred


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=300, widget=forms.TextInput(attrs={"size": 40}))


def apply_each(
    modeladmin, request, queryset, service, done: str, *, refusals: tuple[type[Exception], ...] = ()
) -> None:
    """Call ``service(obj)`` for each selected row; report successes and each refusal with message_user."""
    ok = 0
    with deferred() as unqueued:
        for obj in queryset:
            try:
                service(obj)
            except (IllegalTransition, *refusals) as exc:
                modeladmin.message_user(request, f"{obj}: {exc}", messages.ERROR)
            else:
                ok += 1
    if ok and unqueued:
        modeladmin.message_user(request, f"{ok} {done}. {DEFERRED_MESSAGE}", messages.WARNING)
    elif ok:
        modeladmin.message_user(request, f"{ok} {done}.", messages.SUCCESS)


def with_reason(
    modeladmin,
    request,
    queryset,
    title: str,
    service,
    done: str,
    *,
    refusals: tuple[type[Exception], ...] = (),
) -> TemplateResponse | None:
    """Ask for a reason on an intermediate page, then apply ``service(obj, reason)`` to each selected row."""
    if "apply" in request.POST:
        form = ReasonForm(request.POST)
        if form.is_valid():
            reason = form.cleaned_data["reason"]
            apply_each(
                modeladmin, request, queryset, lambda obj: service(obj, reason), done, refusals=refusals
            )
            return None
    else:
        form = ReasonForm()
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "form": form,
        "objects": queryset,
        "opts": modeladmin.model._meta,
        "action": request.POST.get("action", ""),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request, "portal/admin_reason.html", context)


def with_form(
    modeladmin,
    request,
    queryset,
    title: str,
    form: forms.Form,
    apply,
    *,
    refusals: tuple[type[Exception], ...] = (),
) -> TemplateResponse | None:
    """Ask for ``form`` on an intermediate page, then call ``apply(cleaned_data)`` once; report the result."""
    if "apply" in request.POST and form.is_bound and form.is_valid():
        try:
            done = apply(form.cleaned_data)
        except (IllegalTransition, *refusals) as exc:
            modeladmin.message_user(request, str(exc), messages.ERROR)
        else:
            modeladmin.message_user(request, done, messages.SUCCESS)
        return None
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "form": form,
        "objects": queryset,
        "opts": modeladmin.model._meta,
        "action": request.POST.get("action", ""),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request, "portal/admin_reason.html", context)
