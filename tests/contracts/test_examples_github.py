"""GitHub's own examples, fed to the GitHub adapter's parsers: the records, and only documented reads.

Source: tests/contracts/github.json (@octokit/openapi api.github.com.json and ghec.json, see SOURCES.md).
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone

from connectors.idp import github
from tests.contracts import contract
from tests.contracts.reads import tracked, undocumented_reads

PACIFIC = timezone(timedelta(hours=-7))


def example(operation_id: str, name: str = "default"):
    op = contract.find("github", operation_id)
    return copy.deepcopy(next(e for e in op.examples if e["name"] == name)["value"])


def test_a_member_profile_gives_the_identity():
    members, member_reads = tracked(example("orgs/list-members"))
    (member,) = members
    login, uid = member["login"], str(member["id"])
    profile, reads = tracked(example("users/get-by-username", "default-response"))
    user = github.parse_user(login, uid, profile)
    assert (user.external_id, user.email, user.name) == ("1", "octocat@github.com", "monalisa octocat")
    assert undocumented_reads("github", "orgs/list-members", member_reads) == []
    assert undocumented_reads("github", "users/get-by-username", reads) == []


def test_a_fine_grained_pat_grant():
    pats, reads = tracked(example("orgs/list-pat-grants"))
    (grant,) = [github.parse_pat(p) for p in pats]
    assert grant.external_id == "pat:25381" and grant.kind == "personal_access_token"
    assert grant.app_name == "Some Token" and grant.client_id == "github-pat:some-token"
    assert grant.user_external_id == "1" and grant.extra["owner_login"] == "octocat"
    assert grant.scopes == ["metadata:read", "members:read"]
    assert grant.created_at == datetime(2023, 5, 16, 8, 47, 9, tzinfo=PACIFIC)
    assert grant.expires_at == datetime(2023, 11, 16, 15, 47, 9, tzinfo=UTC)
    assert grant.last_used_at is None
    assert grant.extra["token_id"] == 98716 and grant.extra["repository_selection"] == "all"
    assert undocumented_reads("github", "orgs/list-pat-grants", reads) == []


def test_a_pending_pat_request():
    requests, reads = tracked(example("orgs/list-pat-grant-requests"))
    (request,) = [github.parse_pat_request(r) for r in requests]
    assert request.external_id == "25381" and request.extra["request_id"] == 25381
    assert request.reason == "I need to access the GitHub API"
    assert request.user_external_id == "1" and request.scopes == ["metadata:read", "members:read"]
    assert request.created_at == datetime(2023, 5, 16, 15, 47, 9, tzinfo=UTC)
    assert undocumented_reads("github", "orgs/list-pat-grant-requests", reads) == []


def test_classic_pats_authorised_for_saml_sso():
    creds, reads = tracked(example("orgs/list-saml-sso-authorizations"))
    grants = [github.parse_credential_authorization(c, {"octocat": "1", "hubot": "2"}) for c in creds]
    first = grants[0]
    assert first.external_id == "cred:161195" and first.token_hint == "71c3fc11"
    assert first.scopes == ["user", "repo"] and first.user_external_id == "1"
    assert first.expires_at == datetime(2011, 2, 25, 19, 6, 43, tzinfo=UTC)
    assert first.last_used_at == datetime(2011, 1, 26, 19, 6, 43, tzinfo=UTC)
    assert grants[1].user_external_id == "2"
    assert undocumented_reads("github", "orgs/list-saml-sso-authorizations", reads) == []


def test_org_installations_are_apps():
    body, reads = tracked(example("orgs/list-app-installations"))
    (app,) = [github.parse_installation(i) for i in body["installations"]]
    assert (app.client_id, app.name, app.external_id, app.kind) == (
        "github-app:github-actions",
        "github-actions",
        "25381",
        "plugin",
    )
    assert undocumented_reads("github", "orgs/list-app-installations", reads) == []


def test_audit_events_and_their_token():
    events, reads = tracked(example("orgs/get-audit-log"))
    parsed = [github.parse_audit_event(e, {}) for e in events]
    first = parsed[0]
    assert first.external_id == "xJJFlFOhQ6b-5vaAFy9Rjw" and first.action == "team.add_member"
    assert first.occurred_at == datetime(2020, 12, 2, 17, 24, 34, 512000, tzinfo=UTC)
    assert first.data == {"actor": "octocat"}
    assert undocumented_reads("github", "orgs/get-audit-log", reads) == []


def test_an_audit_event_names_its_pat_through_token_id():
    # The example events carry no token data; these fields are the documented ones (SOURCES.md).
    event = example("orgs/get-audit-log")[0] | {
        "token_id": 98716,
        "programmatic_access_type": "Fine-grained personal access token",
        "hashed_token": "aGFzaGVk",
        "token_scopes": "metadata:read",
        "actor_ip": "192.0.2.1",
    }
    assert contract.check("github", "GET", "/orgs/acme/audit-log", 200, [event]) == []
    tracked_event, reads = tracked([event])
    activity = github.parse_audit_event(tracked_event[0], {98716: 25381})
    assert activity.data["grant_external_id"] == "pat:25381" and activity.ip == "192.0.2.1"
    assert activity.data["hashed_token"] == "aGFzaGVk"
    assert undocumented_reads("github", "orgs/get-audit-log", reads) == []


def test_the_installation_token_answer_has_what_the_adapter_takes():
    body = example("apps/create-installation-access-token")
    assert body["token"].startswith("ghs_") and body["expires_at"] == "2016-07-11T22:14:10Z"
