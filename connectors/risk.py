"""Risk of a connector, derived from the scopes its grants hold, for all four providers.

Each scope is scored by the first matching rule of ``RULES`` (0–100); a set of scopes scores its
highest scope, plus a little for every further high-risk scope and for tenant-wide consent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .models import Risk

GOOGLE = "https://www.googleapis.com/auth/"

# (pattern, score, why). Patterns are regular expressions matched against the whole normalised scope:
# Google's URL prefix stripped, GitHub "permission: access" written as "permission:access".
# Order matters: the first match wins, so specific rules come before the generic ones.
RULES: tuple[tuple[str, int, str], ...] = (
    # identity only
    (
        r"openid|email|profile|offline_access|userinfo\.(email|profile)|User\.Read|metadata:read",
        2,
        "sign-in and basic profile",
    ),
    # Google Workspace
    (r"https://mail\.google\.com/", 95, "full Gmail access"),
    (r"drive", 90, "full Google Drive access"),
    (r"cloud-platform", 90, "full Google Cloud access"),
    (
        r"admin\.directory\.[a-z.]+\.readonly|admin\.reports\.[a-z.]+\.readonly",
        65,
        "reads the Workspace directory",
    ),
    (r"admin\.[a-z.]+", 95, "Workspace administration"),
    (r"gmail\.(modify|compose|insert|settings\.[a-z]+)", 85, "changes Gmail"),
    (r"gmail\.readonly", 70, "reads all mail"),
    (r"gmail\.send", 65, "sends mail as the user"),
    (r"gmail\.(metadata|labels)", 40, "reads mail metadata"),
    (r"drive\.readonly", 65, "reads all of Drive"),
    (r"drive\.(file|appdata|appfolder|install)", 25, "files the app created or was given"),
    (r"drive\.metadata(\.readonly)?", 35, "Drive file metadata"),
    (r"(documents|spreadsheets|presentations)", 60, "reads and changes documents"),
    (r"(documents|spreadsheets|presentations)\.readonly", 45, "reads documents"),
    (r"calendar(\.events)?", 45, "changes calendars"),
    (r"calendar(\.events)?\.readonly|calendar\.settings\.readonly", 30, "reads calendars"),
    (r"contacts|directory\.readonly", 35, "contacts"),
    (r"contacts\.(readonly|other\.readonly)", 30, "reads contacts"),
    (r"(tasks|tasks\.readonly)", 20, "tasks"),
    # Microsoft Entra ID / Graph
    (r"Directory\.(ReadWrite\.All|AccessAsUser\.All)", 100, "changes the whole directory"),
    (
        r"(RoleManagement|Application|AppRoleAssignment|Policy)\.ReadWrite\.[A-Za-z.]+",
        100,
        "changes tenant roles, apps or policies",
    ),
    (r"Directory\.Read\.All", 70, "reads the whole directory"),
    (r"Sites\.FullControl\.All", 100, "full control of every SharePoint site"),
    (r"Mail\.ReadWrite(\.Shared)?", 90, "reads and changes all mail"),
    (r"Files\.ReadWrite\.All", 90, "reads and changes every file the user can reach"),
    (r"Sites\.(ReadWrite|Manage)\.All", 85, "changes SharePoint sites"),
    (r"(User|Group|Domain|Device)\.ReadWrite\.All", 85, "changes users, groups or devices"),
    (r"Mail\.Read(\.Shared)?", 70, "reads all mail"),
    (r"Mail\.Send(\.Shared)?", 65, "sends mail as the user"),
    (r"Files\.Read\.All", 65, "reads every file the user can reach"),
    (r"Sites\.Read\.All", 60, "reads SharePoint sites"),
    (r"(Chat|ChannelMessage)\.(ReadWrite|Send)[A-Za-z.]*", 70, "writes Teams chats"),
    (r"(Chat|ChannelMessage)\.Read[A-Za-z.]*", 60, "reads Teams chats"),
    (
        r"OnlineMeetingTranscript\.Read\.All|OnlineMeetingRecording\.Read\.All",
        65,
        "reads meeting transcripts",
    ),
    (r"Notes\.ReadWrite\.All", 70, "changes OneNote notebooks"),
    (r"Files\.ReadWrite(\.AppFolder)?", 45, "changes the user's own files"),
    (r"Files\.Read", 35, "reads the user's own files"),
    (r"Calendars\.ReadWrite(\.Shared)?", 45, "changes calendars"),
    (r"Calendars\.Read(\.Shared)?", 30, "reads calendars"),
    (r"OnlineMeetings\.(Read|ReadWrite)", 30, "meetings"),
    (r"(User|Group|People)\.Read(Basic)?\.All", 45, "reads the organisation's users"),
    (r"Contacts\.ReadWrite", 40, "changes contacts"),
    (r"Contacts\.Read", 30, "reads contacts"),
    (r"[A-Za-z]+\.ReadWrite\.All", 80, "changes a tenant-wide resource"),
    (r"[A-Za-z]+\.Read\.All", 55, "reads a tenant-wide resource"),
    (r"[A-Za-z]+\.ReadWrite[A-Za-z.]*", 45, "changes a user resource"),
    # Okta
    (
        r"okta\.(roles|authorizationServers|policies|idps|clients|apps)\.manage",
        100,
        "manages Okta apps, roles or policies",
    ),
    (r"okta\.[A-Za-z]+\.manage", 90, "manages Okta objects"),
    (r"okta\.logs\.read", 50, "reads the Okta System Log"),
    (r"okta\.[A-Za-z]+\.read", 45, "reads Okta objects"),
    (r"okta\.[A-Za-z.]+", 60, "Okta management API"),
    # GitHub (fine-grained permissions as "name:access", classic scopes as their names)
    (
        r"(administration|organization_administration|members|organization_secrets|secrets"
        r"|organization_self_hosted_runners|environments):write",
        95,
        "administers the org or its repositories",
    ),
    (r"admin:[a-z_]+|delete_repo|site_admin", 100, "GitHub organisation administration (classic)"),
    (r"repo|workflow", 85, "writes every repository (classic)"),
    (r"(workflows|actions):write", 80, "changes CI workflows"),
    (r"contents:write", 75, "pushes code"),
    (r"(deployments|packages|pages):write", 60, "deploys or publishes"),
    (r"(administration|secrets|organization_administration|members):read", 50, "reads org settings"),
    (r"pull_requests:write", 45, "opens and merges pull requests"),
    (r"(issues|discussions|checks|statuses):write", 30, "writes issues or checks"),
    (r"contents:read|read:org|repo:status|public_repo", 30, "reads code"),
    (r"[a-z_]+:read", 15, "reads repository data"),
    (r"[a-z_]+:write", 40, "writes repository data"),
)

_COMPILED = tuple((re.compile(pattern), score, why) for pattern, score, why in RULES)
UNKNOWN_SCORE = 20  # a scope we do not know is not assumed harmless
TENANT_WIDE_BONUS = 10
HIGH_SCOPE = 60

# Lowest score of each level, highest level first.
LEVELS: tuple[tuple[int, str], ...] = (
    (85, Risk.CRITICAL),
    (60, Risk.HIGH),
    (30, Risk.MEDIUM),
    (0, Risk.LOW),
)


@dataclass(frozen=True, slots=True)
class Assessment:
    level: str
    score: int
    reasons: tuple[str, ...] = ()


def normalise(scope: str) -> str:
    """Return ``scope`` in the form ``RULES`` is written for."""
    scope = scope.strip()
    if scope.startswith(GOOGLE):
        scope = scope[len(GOOGLE) :]
    return re.sub(r"\s*[:=]\s*", ":", scope)


def scope_score(scope: str) -> tuple[int, str]:
    """Return the score of one scope and why."""
    name = normalise(scope)
    for pattern, score, why in _COMPILED:
        if pattern.fullmatch(name):
            return score, why
    return UNKNOWN_SCORE, "unknown scope"


def level_for(score: int) -> str:
    """Return the risk level of a score."""
    for floor, level in LEVELS:
        if score >= floor:
            return level
    return Risk.LOW


def assess(scopes: Iterable[str], *, tenant_wide: bool = False) -> Assessment:
    """Return the risk of a set of scopes."""
    scored = sorted({(*scope_score(s), s) for s in scopes if s}, reverse=True)
    if not scored:
        score, reasons = 0, []
    else:
        score = scored[0][0]
        # Every further high-risk scope adds reach beyond the worst one.
        score += 3 * sum(1 for s, _, _ in scored[1:] if s >= HIGH_SCOPE)
        reasons = [f"{scope}: {why}" for s, why, scope in scored if s >= HIGH_SCOPE] or [
            f"{scored[0][2]}: {scored[0][1]}"
        ]
    if tenant_wide:
        score += TENANT_WIDE_BONUS
        reasons.append("consented for the whole tenant")
    score = min(score, 100)
    return Assessment(level=level_for(score), score=score, reasons=tuple(reasons))
