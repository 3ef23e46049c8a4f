import pytest

from connectors.models import Risk
from connectors.risk import assess, level_for, scope_score

G = "https://www.googleapis.com/auth/"


@pytest.mark.parametrize(
    ("scopes", "level"),
    [
        # Google Workspace
        (["https://mail.google.com/"], Risk.CRITICAL),
        ([G + "drive"], Risk.CRITICAL),
        ([G + "admin.directory.user"], Risk.CRITICAL),
        ([G + "gmail.readonly"], Risk.HIGH),
        ([G + "drive.readonly"], Risk.HIGH),
        ([G + "admin.directory.user.readonly"], Risk.HIGH),
        ([G + "calendar.readonly"], Risk.MEDIUM),
        ([G + "drive.file"], Risk.LOW),
        (["openid", G + "userinfo.email", G + "userinfo.profile"], Risk.LOW),
        # Microsoft Entra ID
        (["Mail.ReadWrite"], Risk.CRITICAL),
        (["Files.ReadWrite.All"], Risk.CRITICAL),
        (["Directory.ReadWrite.All"], Risk.CRITICAL),
        (["Directory.Read.All"], Risk.HIGH),
        (["Mail.Read"], Risk.HIGH),
        (["Files.Read.All"], Risk.HIGH),
        (["Calendars.Read"], Risk.MEDIUM),
        (["openid", "profile", "email", "offline_access", "User.Read"], Risk.LOW),
        # Okta
        (["okta.users.manage"], Risk.CRITICAL),
        (["okta.apps.manage"], Risk.CRITICAL),
        (["okta.users.read"], Risk.MEDIUM),
        (["openid", "profile", "email", "offline_access"], Risk.LOW),
        # GitHub: fine-grained permissions, either spelling, and classic scopes
        (["administration:write"], Risk.CRITICAL),
        (["organization_administration: write"], Risk.CRITICAL),
        (["admin:org"], Risk.CRITICAL),
        (["repo"], Risk.CRITICAL),
        (["contents:write", "metadata:read"], Risk.HIGH),
        (["contents: write"], Risk.HIGH),
        (["contents:read", "metadata:read"], Risk.MEDIUM),
        (["metadata:read"], Risk.LOW),
    ],
)
def test_scopes_rank_as_expected(scopes, level):
    assert assess(scopes).level == level


def test_read_only_scores_below_read_write_for_every_provider():
    pairs = [
        (G + "drive.readonly", G + "drive"),
        (G + "gmail.readonly", "https://mail.google.com/"),
        ("Mail.Read", "Mail.ReadWrite"),
        ("Files.Read.All", "Files.ReadWrite.All"),
        ("okta.users.read", "okta.users.manage"),
        ("contents:read", "contents:write"),
        ("administration:read", "administration:write"),
    ]
    for read, write in pairs:
        assert scope_score(read)[0] < scope_score(write)[0], (read, write)


def test_more_high_risk_scopes_and_tenant_wide_consent_raise_the_score():
    one = assess(["Mail.Read"])
    two = assess(["Mail.Read", "Files.Read.All"])
    tenant = assess(["Mail.Read"], tenant_wide=True)
    assert two.score > one.score
    assert tenant.score > one.score
    assert "consented for the whole tenant" in tenant.reasons


def test_no_scopes_is_low_and_unknown_scopes_are_not_assumed_harmless():
    assert assess([]).level == Risk.LOW
    assert assess([]).score == 0
    assert scope_score("something.new")[0] > scope_score("openid")[0]


def test_score_is_capped_and_levels_have_fixed_floors():
    everything = assess(
        ["https://mail.google.com/", G + "drive", "Directory.ReadWrite.All"], tenant_wide=True
    )
    assert everything.score == 100
    assert [level_for(s) for s in (0, 29, 30, 59, 60, 84, 85, 100)] == [
        Risk.LOW,
        Risk.LOW,
        Risk.MEDIUM,
        Risk.MEDIUM,
        Risk.HIGH,
        Risk.HIGH,
        Risk.CRITICAL,
        Risk.CRITICAL,
    ]


def test_reasons_name_the_scopes_that_make_it_risky():
    result = assess(["openid", "Mail.ReadWrite"])
    assert any(r.startswith("Mail.ReadWrite:") for r in result.reasons)
