"""Pages for attestation reviews (signed links, no account needed), campaign progress and transfers."""

from __future__ import annotations

import csv
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from connectors.models import Connector, Grant, Identity, IllegalTransition
from httpapi.client import client_ip

from . import attestations, offboarding, tokens, transfers
from .models import AttestationCampaign, OwnershipTransfer, User

# ---------------------------------------------------------------------------------------------
# the manager's review page


def _refused(request: HttpRequest, refused: tokens.LinkRefused) -> HttpResponse:
    attestations.link_refused_record(
        refused,
        path=request.path,
        ip=client_ip(request),  # behind proxies, the client as the trusted-proxy settings say
        user_agent=request.META.get("HTTP_USER_AGENT", ""),
    )
    response = render(
        request,
        "attestations/link_refused.html",
        {"reason": refused.reason, "message": str(refused)},
        status=refused.status,
    )
    response["Referrer-Policy"] = "same-origin"
    return response


def _parse_decisions(
    post: Any, campaign: AttestationCampaign, reviewer_id: int
) -> dict[int, tuple[str, str]]:
    """Read ``decision-<id>`` radios and a ``keep_all=<identity id>`` button from the review form."""
    decisions: dict[int, tuple[str, str]] = {}
    for key, value in post.items():
        if not key.startswith("decision-") or not value:
            continue
        try:
            pk = int(key.removeprefix("decision-"))
        except ValueError:
            raise attestations.AttestationError("The form was altered: unknown grant.") from None
        decisions[pk] = (value, post.get(f"comment-{pk}", "")[:2000])
    if post.get("keep_all"):
        try:
            identity_id = int(post["keep_all"])
        except ValueError:
            raise attestations.AttestationError("The form was altered: unknown report.") from None
        pending = attestations.reviewable(campaign.pk, reviewer_id).filter(
            identity_id=identity_id, decision=attestations.Decision.PENDING
        )
        for pk in pending.values_list("pk", flat=True):
            decisions.setdefault(pk, ("keep", post.get(f"comment-{pk}", "")[:2000]))
    return decisions


def _clean_review_url(campaign_id: int, reviewer_id: int) -> str:
    return reverse("attest:review", args=[campaign_id, reviewer_id])


def _private(response: HttpResponse) -> HttpResponse:
    # Only our own origin may see this page's address as a Referer (not "no-referrer": browsers then
    # send "Origin: null" with the form, which CSRF rightly refuses).
    response["Referrer-Policy"] = "same-origin"
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response


@never_cache
@require_http_methods(["GET", "POST"])
def review(request: HttpRequest, campaign_id: int, reviewer_id: int) -> HttpResponse:
    """Open a review link (GET shows a button, POST swaps the token for a session), then show and decide.

    The token travels in a URL only once, on the emailed link's GET, which changes nothing (mail
    scanners prefetch links). The button POSTs it; the answer is a short session and a redirect to
    the same page without the token, so no later URL, redirect, history entry or Referer holds it.
    """
    token = request.GET.get("t", "") if request.method == "GET" else request.POST.get("token", "")
    try:
        if token:
            campaign, reviewer = attestations.review_open(
                token=token, campaign_id=campaign_id, reviewer_id=reviewer_id
            )
            if request.method == "GET":
                return _private(
                    render(
                        request,
                        "attestations/review_open.html",
                        {"campaign": campaign, "reviewer": reviewer, "token": token},
                    )
                )
            request.session.cycle_key()  # a fresh session id for the new right
            attestations.review_session_start(request.session, campaign=campaign, reviewer=reviewer)
        else:
            campaign, reviewer = attestations.review_session_open(
                request.session, campaign_id=campaign_id, reviewer_id=reviewer_id
            )
        if request.method == "POST":
            _decide(request, campaign, reviewer)
            return redirect(_clean_review_url(campaign_id, reviewer_id))
    except tokens.LinkRefused as refused:
        return _refused(request, refused)
    groups = attestations.review_groups(campaign.pk, reviewer.pk)
    response = render(
        request,
        "attestations/review.html",
        {
            "campaign": campaign,
            "reviewer": reviewer,
            "groups": groups,
            "pending": sum(len(g.pending) for g in groups),
            "total": sum(len(g.items) for g in groups),
        },
    )
    return _private(response)


def _decide(request: HttpRequest, campaign: AttestationCampaign, reviewer: Identity) -> None:
    """Record the decisions a review form posted (none when it only opened the session)."""
    try:
        decisions = _parse_decisions(request.POST, campaign, reviewer.pk)
        if not decisions:
            if not request.POST.get("token"):
                messages.warning(request, "Choose keep or revoke for at least one grant, then submit.")
            return
        recorded, skipped = attestations.attestation_decide_many(
            campaign=campaign, reviewer=reviewer, decisions=decisions
        )
        text = f"Recorded {recorded} decision{'s' if recorded != 1 else ''}."
        if skipped:
            text += f" {skipped} had already been decided and were left as they were."
        messages.success(request, text)
    except (attestations.AttestationError, IllegalTransition) as exc:
        messages.error(request, str(exc))


# ---------------------------------------------------------------------------------------------
# campaign progress (IAM)


def _require_iam(request: HttpRequest) -> None:
    if not request.user.has_perm("governance.view_attestationcampaign"):
        raise PermissionDenied("Campaign progress is for IAM staff.")


@login_required
def campaign_list(request: HttpRequest) -> HttpResponse:
    """List attestation campaigns with their completion."""
    _require_iam(request)
    return render(request, "attestations/campaign_list.html", {"campaigns": attestations.campaign_list()})


@login_required
def campaign_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """Show a campaign's completion per manager, who is overdue, and the decisions so far."""
    _require_iam(request)
    campaign = get_object_or_404(AttestationCampaign.objects.select_related("launched_by"), pk=pk)
    return render(
        request,
        "attestations/campaign_detail.html",
        {"campaign": campaign, "progress": attestations.campaign_progress(campaign)},
    )


class _Echo:
    def write(self, value: str) -> str:
        return value


@login_required
def campaign_export(request: HttpRequest, pk: int) -> StreamingHttpResponse:
    """Stream every decision of a campaign as CSV evidence (who, when, what)."""
    _require_iam(request)
    campaign = get_object_or_404(AttestationCampaign, pk=pk)
    writer = csv.writer(_Echo())
    rows = (writer.writerow(row) for row in attestations.campaign_export_rows(campaign))
    filename = f"attestation-{campaign.pk}-decisions.csv"
    return StreamingHttpResponse(
        rows, content_type="text/csv", headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )


# ---------------------------------------------------------------------------------------------
# ownership transfers


class OfferForm(forms.Form):
    email = forms.EmailField(label="New owner's email", help_text="They must have a Lanyard account.")
    note = forms.CharField(label="Note for them", required=False, widget=forms.Textarea(attrs={"rows": 3}))

    def clean_email(self) -> User:
        user = User.objects.filter(email__iexact=self.cleaned_data["email"], is_active=True).first()
        if user is None:
            raise forms.ValidationError("Nobody with an active Lanyard account has this address.")
        return user


class DeclineForm(forms.Form):
    reason = forms.CharField(label="Why you decline", widget=forms.Textarea(attrs={"rows": 3}))


TRANSFER_REFUSALS = (IllegalTransition, transfers.TransferError)


def _can_see_transfer(user: User, transfer: OwnershipTransfer) -> bool:
    return user.pk in (transfer.to_user_id, transfer.from_user_id) or user.has_perm(
        "governance.view_ownershiptransfer"
    )


@login_required
def transfer_list(request: HttpRequest) -> HttpResponse:
    """List the pending transfers offered to the user and by them (all of them, for IAM)."""
    user = request.user
    iam = user.has_perm("governance.view_ownershiptransfer")
    qs = OwnershipTransfer.objects.filter(status=OwnershipTransfer.Status.PENDING).select_related(
        "connector", "from_user", "to_user"
    )
    if not iam:
        qs = qs.filter(Q(to_user=user) | Q(from_user=user))
    rows = list(qs.order_by("-created_at")[:500])
    if not iam and not rows and not Connector.objects.filter(business_owner=user).exists():
        raise PermissionDenied("You have no ownership transfers.")
    return render(
        request,
        "attestations/transfer_list.html",
        {
            "incoming": [t for t in rows if t.to_user_id == user.pk],
            "others": [t for t in rows if t.to_user_id != user.pk],
            "iam": iam,
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def transfer_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """Show a transfer; the proposed owner accepts or declines it, the offerer or IAM cancels it (POST)."""
    transfer = get_object_or_404(
        OwnershipTransfer.objects.select_related("connector", "from_user", "to_user"), pk=pk
    )
    if not _can_see_transfer(request.user, transfer):
        raise Http404("No such transfer.")
    decline_form = (
        DeclineForm(request.POST or None) if request.POST.get("action") == "decline" else DeclineForm()
    )
    if request.method == "POST":
        action = request.POST.get("action")
        try:
            if action == "accept":
                transfers.transfer_accept(transfer=transfer, actor=request.user)
                messages.success(request, f"You now own '{transfer.connector.name}'.")
            elif action == "decline":
                if not decline_form.is_valid():
                    raise transfers.TransferError(
                        "Say why you decline, so the connector can find another owner."
                    )
                transfers.transfer_decline(
                    transfer=transfer, actor=request.user, reason=decline_form.cleaned_data["reason"]
                )
                messages.success(request, f"You declined '{transfer.connector.name}'.")
            elif action == "cancel":
                transfers.transfer_cancel(transfer=transfer, actor=request.user)
                messages.success(request, "The offer is withdrawn.")
            else:
                raise transfers.TransferError("Unknown action.")
        except transfers.TransferNotAllowed as exc:
            raise PermissionDenied(str(exc))
        except TRANSFER_REFUSALS as exc:
            messages.error(request, str(exc))
        return redirect("attest:transfer_detail", pk=transfer.pk)
    return render(
        request,
        "attestations/transfer_detail.html",
        {
            "transfer": transfer,
            "decline_form": decline_form,
            "can_answer": transfer.status == OwnershipTransfer.Status.PENDING
            and transfer.to_user_id == request.user.pk,
            "can_cancel": transfer.status == OwnershipTransfer.Status.PENDING
            and (request.user.pk == transfer.from_user_id or transfers.can_manage_owners(request.user)),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def transfer_offer_view(request: HttpRequest, connector_id: int) -> HttpResponse:
    """Let a connector's business owner (or IAM) offer it to someone else."""
    connector = get_object_or_404(Connector.objects.select_related("business_owner"), pk=connector_id)
    if connector.business_owner_id != request.user.pk and not transfers.can_manage_owners(request.user):
        raise Http404("No such connector among yours.")
    form = OfferForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            transfer = transfers.transfer_offer(
                connector=connector,
                to_user=form.cleaned_data["email"],
                actor=request.user,
                note=form.cleaned_data["note"],
            )
        except TRANSFER_REFUSALS as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Offered to {transfer.to_user}. They will get an email.")
            return redirect(reverse("attest:transfer_detail", args=[transfer.pk]))
    pending = (
        connector.transfers.filter(status=OwnershipTransfer.Status.PENDING).select_related("to_user").first()
    )
    return render(
        request,
        "attestations/transfer_offer.html",
        {"connector": connector, "form": form, "pending": pending},
    )


# ---------------------------------------------------------------------------------------------
# offboarding by hand (IAM)


@login_required
@require_http_methods(["GET", "POST"])
def identity_offboard_view(request: HttpRequest, pk: int) -> HttpResponse:
    """Show what offboarding an identity would do; IAM confirms it by POST."""
    if not request.user.has_perm("connectors.change_identity"):
        raise PermissionDenied("Offboarding is for IAM staff.")
    identity = get_object_or_404(Identity.objects.select_related("user", "manager"), pk=pk)
    if request.method == "POST":
        summary = offboarding.identity_offboard(identity=identity, actor=request.user)
        if any(summary.values()):
            messages.success(
                request,
                f"{identity.email}: {summary['grants_revoked']} grant(s) revoking, "
                f"{summary['connectors_unowned']} connector(s) without an owner, "
                f"{summary['transfers_offered']} handed to their manager.",
            )
        else:
            messages.info(request, f"{identity.email}: nothing left to offboard.")
        return redirect("attest:identity_offboard", pk=identity.pk)
    user = offboarding.departing_user(identity)
    return render(
        request,
        "attestations/offboard.html",
        {
            "identity": identity,
            "grants": identity.grants.filter(status=Grant.Status.ACTIVE).select_related("connector")[:200],
            "active_grants": identity.grants.filter(status=Grant.Status.ACTIVE).count(),
            "connectors": Connector.objects.filter(business_owner=user).exclude(
                status__in=transfers.CLOSED_CONNECTOR
            )
            if user
            else [],
            "heir": offboarding.next_owner(identity),
        },
    )
