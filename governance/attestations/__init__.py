"""Attestation campaigns: managers confirm, per report, which AI grants stay.

One module per concern, in the order a campaign lives: ``routing`` (who reviews what), ``launch``,
``links`` (signed review links and what a reviewer sees), ``decisions``, ``deadline`` (reminders,
escalation, the deadline policy, the tick), ``mail``, ``progress`` (IAM's view and the CSV evidence),
``schedule`` (scheduled and demo campaigns) and ``checks``. The names below are the public API.
"""

from ..models import Attestation
from .checks import check_attestation_settings
from .deadline import attestation_tick, campaign_close, reminders_due, review_nudge
from .decisions import attestation_decide, attestation_decide_many
from .launch import campaign_launch
from .links import (
    ReportGroup,
    link_refused_record,
    review_check,
    review_groups,
    review_open,
    review_session_open,
    review_session_start,
    review_url,
    reviewable,
)
from .mail import review_mail_send
from .progress import (
    EXPORT_HEADER,
    CampaignProgress,
    ManagerProgress,
    campaign_export_rows,
    campaign_list,
    campaign_progress,
)
from .routing import (
    DEMO_CAMPAIGN_NAME,
    MAX_CHAIN,
    AttestationError,
    campaign_grants,
    escalation_target,
    first_active_above,
    manager_chains,
)
from .schedule import campaign_schedule_run, demo_campaign, schedule_period

Decision = Attestation.Decision

__all__ = [
    "DEMO_CAMPAIGN_NAME",
    "EXPORT_HEADER",
    "MAX_CHAIN",
    "AttestationError",
    "CampaignProgress",
    "Decision",
    "ManagerProgress",
    "ReportGroup",
    "attestation_decide",
    "attestation_decide_many",
    "attestation_tick",
    "campaign_close",
    "campaign_export_rows",
    "campaign_grants",
    "campaign_launch",
    "campaign_list",
    "campaign_progress",
    "campaign_schedule_run",
    "check_attestation_settings",
    "demo_campaign",
    "escalation_target",
    "first_active_above",
    "link_refused_record",
    "manager_chains",
    "reminders_due",
    "review_groups",
    "review_mail_send",
    "review_nudge",
    "review_check",
    "review_open",
    "review_session_open",
    "review_session_start",
    "review_url",
    "reviewable",
    "schedule_period",
]
