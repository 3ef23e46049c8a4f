"""``{% decisions_card days %}``: the decision point's figures beside the activity on the audit dashboard."""

from __future__ import annotations

from datetime import timedelta

from django import template
from django.db.models import F, Sum
from django.utils import timezone

from access.models import DecisionCount

register = template.Library()


@register.inclusion_tag("access/_decisions_card.html")
def decisions_card(days: int = 30, limit: int = 10) -> dict:
    """Permits and denies per connector in the window (two aggregate queries)."""
    since = timezone.now() - timedelta(days=days)
    rows = DecisionCount.objects.filter(hour__gte=since)
    totals = rows.aggregate(permits=Sum("permits"), denies=Sum("denies"))
    top = list(
        rows.values("connector_id", "connector__name", "connector__status")
        .annotate(permitted=Sum("permits"), denied=Sum("denies"))
        .order_by((F("permitted") + F("denied")).desc(), "connector_id")[:limit]
    )
    return {"days": days, "permits": totals["permits"] or 0, "denies": totals["denies"] or 0, "top": top}
