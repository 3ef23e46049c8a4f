"""Signed review links for attestation emails: they name the campaign and the reviewer, and expire.

A link is a bearer credential for one reviewer's part of one campaign, so the manager needs no
Lanyard account. It is signed with the project's SECRET_KEY under its own salt, carries its
expiry (the campaign deadline), and is checked against the campaign's live state on every use,
which is what makes it stop working once the campaign closes. Nothing about it is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from django.core import signing
from django.utils import timezone

SALT = "lanyard.attestation.review-link"


class LinkRefused(Exception):
    """A review link that must not be honoured; ``reason`` names why, ``status`` is the HTTP answer."""

    MESSAGES = {
        "tampered": "This link is not valid. It may have been cut short or altered.",
        "expired": "This link has expired: the review's deadline has passed.",
        "closed": "This review is closed. Decisions can no longer be recorded.",
        "wrong_manager": "This link was issued to someone else, or for another review.",
        "session_expired": "This review session has timed out. Open the link from your email again.",
    }
    STATUS = {"tampered": 403, "expired": 410, "closed": 410, "wrong_manager": 403, "session_expired": 403}

    def __init__(self, reason: str, *, campaign_id: int | None = None, reviewer_id: int | None = None):
        self.reason = reason
        self.campaign_id = campaign_id
        self.reviewer_id = reviewer_id
        super().__init__(self.MESSAGES[reason])

    @property
    def status(self) -> int:
        return self.STATUS[self.reason]


@dataclass(frozen=True)
class ReviewClaim:
    campaign_id: int
    reviewer_id: int
    expires_at: datetime


def make_review_token(*, campaign_id: int, reviewer_id: int, expires_at: datetime) -> str:
    """Return a signed token naming the campaign and the reviewer (an Identity), valid until expiry."""
    return signing.dumps(
        {"c": campaign_id, "r": reviewer_id, "x": int(expires_at.timestamp())}, salt=SALT, compress=False
    )


def read_review_token(token: str) -> ReviewClaim:
    """Return what a token claims or raise LinkRefused (tampered, expired); state checks are the caller's."""
    try:
        data = signing.loads(token, salt=SALT)
        claim = ReviewClaim(
            campaign_id=int(data["c"]),
            reviewer_id=int(data["r"]),
            expires_at=datetime.fromtimestamp(int(data["x"]), tz=UTC),
        )
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        raise LinkRefused("tampered") from None
    if timezone.now() >= claim.expires_at:
        raise LinkRefused("expired", campaign_id=claim.campaign_id, reviewer_id=claim.reviewer_id)
    return claim
