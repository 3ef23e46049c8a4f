"""Portal pages for owners, IAM staff and employees: parse, authorise, call one service, render."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST
from django_tables2 import RequestConfig

from connectors.models import Connector, ConnectorApp, Grant, IllegalTransition
from connectors.queueing import DEFERRED_MESSAGE, deferred

from . import permissions as perms
from . import selectors, services
from .filters import ConnectorFilter, GrantFilter, RequestFilter, ShadowFilter, SigninEventFilter
from .forms import DecisionForm, MergeForm, OwnerForm, ProvisionForm, ReasonForm, RequestForm, SanctionForm
from .models import ConnectorRequest
from .tables import (
    PER_PAGE,
    GrantsTable,
    InboxTable,
    MyConnectorsTable,
    RequestsTable,
    ShadowTable,
    SigninEventsTable,
)

REFUSALS = (IllegalTransition, services.WorkflowError)


def _table(request: HttpRequest, table_class, qs: QuerySet, **kwargs: Any):
    table = table_class(qs, **kwargs)
    RequestConfig(request, paginate={"per_page": PER_PAGE}).configure(table)
    return table


def _back(request: HttpRequest, default: str) -> HttpResponseRedirect:
    """Redirect to the page the form was posted from when it is ours, else to ``default``."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return redirect(target)
    return redirect(default)


def _attempt(request: HttpRequest, action: Callable[[], Any], success: str) -> bool:
    """Run a service call; report its refusal (lifecycle, permission, race) as a message."""
    try:
        with deferred() as unqueued:
            action()
    except REFUSALS as exc:
        messages.error(request, str(exc))
        return False
    if unqueued:
        # Committed, but its background job is not queued yet: the sweep sends it once the broker is back.
        messages.warning(request, f"{success} {DEFERRED_MESSAGE}")
    else:
        messages.success(request, success)
    return True


# ---------------------------------------------------------------------------------------------
# lists


@login_required
def my_connectors(request: HttpRequest) -> HttpResponse:
    """List the connectors the user owns, with holders, last use and pending requests."""
    perms.require(perms.owns_connectors(request.user) or perms.is_iam(request.user))
    filterset = ConnectorFilter(request.GET, queryset=selectors.my_connectors(request.user))
    table = _table(request, MyConnectorsTable, filterset.qs)
    return render(request, "portal/my_connectors.html", {"table": table, "filter": filterset})


@login_required
def inbox(request: HttpRequest) -> HttpResponse:
    """List the requests waiting for the user's decision, with the context to decide them."""
    user = request.user
    perms.require(perms.owns_connectors(user) or perms.is_iam(user) or perms.can_provision(user))
    filterset = RequestFilter(request.GET, queryset=selectors.inbox(user))
    table = _table(request, InboxTable, filterset.qs)
    # One query for the whole page: vendors of the page's rows, not a subquery per row.
    table.similar = selectors.similar_sanctioned([row.record for row in table.page.object_list])
    return render(request, "portal/inbox.html", {"table": table, "filter": filterset})


@login_required
def my_grants(request: HttpRequest) -> HttpResponse:
    """List the user's own grants (through their identities) and their requests."""
    perms.require(perms.has_identity(request.user), "Your account is not linked to an identity.")
    filterset = GrantFilter(request.GET, queryset=selectors.my_grants(request.user))
    table = _table(request, GrantsTable, filterset.qs, exclude=("identity",), can_revoke=True)
    requests_table = _table(request, RequestsTable, selectors.my_requests(request.user), prefix="r-")
    return render(
        request,
        "portal/my_grants.html",
        {"table": table, "filter": filterset, "requests_table": requests_table},
    )


@login_required
def shadow(request: HttpRequest) -> HttpResponse:
    """List discovered (shadow) connectors for IAM to sanction or revoke."""
    perms.require(perms.is_iam(request.user))
    filterset = ShadowFilter(request.GET, queryset=selectors.shadow_connectors())
    table = _table(request, ShadowTable, filterset.qs)
    return render(request, "portal/shadow.html", {"table": table, "filter": filterset})


@login_required
def security(request: HttpRequest) -> HttpResponse:
    """List sign-in security events (failures, lockouts, MFA and password changes, staff sign-ins) for IAM."""
    perms.require(request.user.is_staff and perms.is_iam(request.user))
    filterset = SigninEventFilter(request.GET, queryset=selectors.signin_events())
    table = _table(request, SigninEventsTable, filterset.qs)
    return render(request, "portal/security.html", {"table": table, "filter": filterset})


# ---------------------------------------------------------------------------------------------
# connector detail and actions


@login_required
def connector_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """Show a connector: owner, status history, grants with identities and devices, recent AI activity."""
    connector = get_object_or_404(
        Connector.objects.select_related("business_owner", "technical_owner", "catalog_entry", "merged_into"),
        pk=pk,
    )
    perms.require(perms.can_view_connector(request.user, connector))
    can_revoke = perms.can_revoke_connector(request.user, connector)
    grants = _table(
        request,
        GrantsTable,
        selectors.connector_grants(connector),
        exclude=("connector",),
        prefix="g-",
        can_revoke=can_revoke,
    )
    return render(
        request,
        "portal/connector_detail.html",
        {
            "connector": connector,
            "grants": grants,
            "history": selectors.connector_history(connector),
            "paths": selectors.connector_paths(connector),
            "activity": selectors.connector_activity(connector),
            "requests": selectors.connector_requests(connector)[:20],
            "can_revoke": can_revoke,
            "can_manage": perms.can_manage_register(request.user),
            "is_iam": perms.is_iam(request.user),
            "reason_form": ReasonForm(),
            "owner_form": OwnerForm(initial={"owner": connector.business_owner_id}),
        },
    )


@login_required
@require_POST
def connector_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    """Revoke a connector and every grant on it at its IdP."""
    from connectors.services import connector_revoke as revoke

    connector = get_object_or_404(Connector, pk=pk)
    perms.require(perms.can_revoke_connector(request.user, connector))
    form = ReasonForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Say why the connector is revoked.")
    else:
        _attempt(
            request,
            lambda: revoke(
                connector=connector,
                actor=request.user,
                reason=form.cleaned_data["reason"],
                confirm_tenant_wide=request.POST.get("confirm_tenant_wide") == "on",
            ),
            f"'{connector.name}' is revoked; its grants are being revoked at their identity providers.",
        )
    return _back(request, reverse("portal:connector_detail", args=[pk]))


@login_required
@require_POST
def connector_suspend(request: HttpRequest, pk: int) -> HttpResponse:
    connector = get_object_or_404(Connector, pk=pk)
    perms.require(perms.can_manage_register(request.user))
    reason = request.POST.get("reason", "")
    if connector.status == Connector.Status.SUSPENDED:
        _attempt(
            request,
            lambda: services.connector_resume(connector=connector, actor=request.user, reason=reason),
            f"'{connector.name}' is active again.",
        )
    else:
        _attempt(
            request,
            lambda: services.connector_suspend(connector=connector, actor=request.user, reason=reason),
            f"'{connector.name}' is suspended.",
        )
    return redirect("portal:connector_detail", pk=pk)


@login_required
@require_POST
def connector_owner(request: HttpRequest, pk: int) -> HttpResponse:
    """Assign (or change) a connector's business owner (IAM)."""
    connector = get_object_or_404(Connector, pk=pk)
    perms.require(perms.is_iam(request.user))
    form = OwnerForm(request.POST)
    if form.is_valid():
        owner = form.cleaned_data["owner"]
        _attempt(
            request,
            lambda: services.connector_set_owner(connector=connector, owner=owner, actor=request.user),
            f"{owner.email} now owns '{connector.name}'.",
        )
    else:
        messages.error(request, "Pick an owner.")
    return _back(request, reverse("portal:connector_detail", args=[pk]))


@login_required
def connector_sanction(request: HttpRequest, pk: int) -> HttpResponse:
    """Start sanctioning a discovered connector: assign its owner and request it on someone's behalf."""
    connector = get_object_or_404(Connector, pk=pk)
    perms.require(perms.is_iam(request.user))
    form = SanctionForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        if _attempt(
            request,
            lambda: services.connector_sanction(
                connector=connector,
                actor=request.user,
                owner=d["owner"],
                justification=d["justification"],
                scopes=d["scopes"],
                on_behalf_of=d["on_behalf_of"],
            ),
            f"Sanctioning '{connector.name}': {d['owner'].email} has been asked to decide.",
        ):
            return redirect("portal:shadow")
    return render(request, "portal/sanction.html", {"connector": connector, "form": form})


@login_required
def connector_merge(request: HttpRequest, pk: int) -> HttpResponse:
    """Merge a connector into another one that is the same product (IAM): paths, grants, requests move."""
    from connectors.merging import connector_merge as merge

    connector = get_object_or_404(Connector.objects.exclude(status=Connector.Status.MERGED), pk=pk)
    perms.require(perms.is_iam(request.user))
    form = MergeForm(request.POST or None, connector=connector)
    if request.method == "POST" and form.is_valid():
        survivor = form.cleaned_data["survivor"]
        if _attempt(
            request,
            lambda: merge(survivor=survivor, merged=connector, actor=request.user),
            f"'{connector.name}' is merged into '{survivor.name}'; the next syncs attach its paths there.",
        ):
            return redirect("portal:connector_detail", pk=survivor.pk)
    return render(request, "portal/merge.html", {"connector": connector, "form": form})


@login_required
@require_POST
def connector_split(request: HttpRequest, pk: int) -> HttpResponse:
    """Move one path out of its connector into a connector of its own (IAM): undoes a wrong merge."""
    from connectors.merging import connector_split as split

    app = get_object_or_404(ConnectorApp, pk=pk)
    perms.require(perms.is_iam(request.user))
    result: dict[str, Connector] = {}
    if _attempt(
        request,
        lambda: result.setdefault("new", split(app=app, actor=request.user)),
        f"'{app.name or app.client_id}' is a connector of its own again.",
    ):
        return redirect("portal:connector_detail", pk=result["new"].pk)
    return redirect("portal:connector_detail", pk=app.connector_id)


@login_required
@require_POST
def grant_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    """Revoke one grant: the holder's own, or one on a connector the user owns, or any for IAM."""
    from connectors.services import grant_revoke as revoke

    grant = get_object_or_404(Grant.objects.select_related("identity", "connector"), pk=pk)
    perms.require(perms.can_revoke_grant(request.user, grant))
    reason = request.POST.get("reason", "").strip() or "Revoked from the portal."
    _attempt(
        request,
        lambda: revoke(grant=grant, actor=request.user, reason=reason),
        f"The grant of '{grant.connector.name}' is being revoked at its identity provider.",
    )
    return _back(request, reverse("portal:my_grants"))


# ---------------------------------------------------------------------------------------------
# requests


@login_required
def request_new(request: HttpRequest) -> HttpResponse:
    """Ask for a connector: a new one, access to an active one, or sanctioning a discovered one."""
    perms.require(perms.has_identity(request.user) or perms.is_iam(request.user))
    initial = {}
    if "connector" in request.GET:
        initial = {"connector": request.GET["connector"], "kind": request.GET.get("kind", "existing")}
    form = RequestForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        try:
            req = services.request_create(
                requester=request.user,
                kind=d["kind"],
                connector=d["connector"],
                name=d["name"],
                vendor=d["vendor"],
                connector_kind=d["connector_kind"],
                justification=d["justification"],
                scopes=d["scopes"],
                data_reached=d["data_reached"],
                source=d["source"],
                provision_data=form.provision_data(),
            )
        except REFUSALS as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Request #{req.pk} for '{req.connector.name}' is sent.")
            return redirect("portal:request_detail", pk=req.pk)
    return render(request, "portal/request_form.html", {"form": form})


@login_required
def request_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """Show a request, its decisions and, for whoever may act, the next step's form."""
    req = get_object_or_404(
        ConnectorRequest.objects.select_related(
            "connector__business_owner", "requester", "on_behalf_of", "source"
        ),
        pk=pk,
    )
    perms.require(perms.can_view_request(request.user, req))
    user = request.user
    S = ConnectorRequest.Status
    ownerless = req.connector.business_owner_id is None
    context = {
        "req": req,
        "decisions": req.decisions.select_related("decided_by"),
        "is_requester": user.pk in (req.requester_id, req.on_behalf_of_id),
        "can_decide": (
            req.status == S.PENDING_OWNER
            and not ownerless
            and perms.holds_object_permission(user, "decide_connector", req.connector)
        )
        or (req.status == S.PENDING_IAM and perms.is_iam(user)),
        "can_provision": req.status == S.APPROVED and perms.can_provision(user),
        "needs_owner": req.status == S.PENDING_OWNER and ownerless and perms.is_iam(user),
        "decision_form": DecisionForm(),
        "provision_form": ProvisionForm(),
        "owner_form": OwnerForm(),
        "source": services.request_source(req),
    }
    return render(request, "portal/request_detail.html", context)


@login_required
@require_POST
def request_decide(request: HttpRequest, pk: int) -> HttpResponse:
    """Approve or reject the step the request is waiting for (owner or IAM)."""
    req = get_object_or_404(ConnectorRequest, pk=pk)
    perms.require(perms.can_view_request(request.user, req))
    form = DecisionForm(request.POST)
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, error)
        return _back(request, reverse("portal:request_detail", args=[pk]))
    # The step comes from the page the person saw: if someone else moved the request meanwhile,
    # the service says so instead of this decision landing on the next step.
    decide = (
        services.request_decide_iam if form.cleaned_data["step"] == "iam" else services.request_decide_owner
    )
    verb = "approved" if form.approve else "rejected"
    _attempt(
        request,
        lambda: decide(
            request=req, actor=request.user, approve=form.approve, reason=form.cleaned_data["reason"]
        ),
        f"Request #{req.pk} {verb}.",
    )
    return _back(request, reverse("portal:inbox"))


@login_required
@require_POST
def request_provision(request: HttpRequest, pk: int) -> HttpResponse:
    """Provision an approved request (IAM)."""
    req = get_object_or_404(ConnectorRequest, pk=pk)
    perms.require(perms.can_provision(request.user))
    form = ProvisionForm(request.POST)
    form.is_valid()
    _attempt(
        request,
        lambda: services.request_provision(
            request=req, actor=request.user, evidence=form.cleaned_data.get("evidence", "")
        ),
        f"Request #{req.pk} is being provisioned.",
    )
    return _back(request, reverse("portal:request_detail", args=[pk]))


@login_required
@require_POST
def request_withdraw(request: HttpRequest, pk: int) -> HttpResponse:
    """Withdraw one's own open request."""
    req = get_object_or_404(ConnectorRequest, pk=pk)
    perms.require(request.user.pk in (req.requester_id, req.on_behalf_of_id))
    _attempt(
        request,
        lambda: services.request_withdraw(
            request=req, actor=request.user, reason=request.POST.get("reason", "")
        ),
        f"Request #{req.pk} withdrawn.",
    )
    return redirect("portal:request_detail", pk=pk)
