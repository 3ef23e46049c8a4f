"""The S3 Object Lock witness, request shapes checked with botocore's Stubber (no live S3 service)."""

from __future__ import annotations

import datetime as dt
import io

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from audit.checkpoints import checkpoint_create
from audit.services import record
from audit.verify import verify
from audit.witness import WitnessError, configured_witness, record_line
from audit.witness_s3 import S3Witness

pytestmark = pytest.mark.django_db


@pytest.fixture
def s3():
    client = boto3.client(
        "s3", region_name="eu-west-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


@pytest.fixture
def witness(s3, settings, monkeypatch):
    client, _ = s3
    settings.LANYARD_AUDIT_WITNESS = "s3"
    w = S3Witness(client, bucket="audit-lock", prefix="lanyard/", retention_days=30)
    monkeypatch.setattr(S3Witness, "from_settings", classmethod(lambda cls: w))
    return w


def expect_put(stubber) -> None:
    """A PutObject whose parameters Stubber validates against S3's model (values checked apart)."""
    stubber.add_response(
        "put_object",
        {"ETag": '"etag"', "VersionId": "v1"},
        {
            "Bucket": "audit-lock",
            "Key": ANY,
            "Body": ANY,
            "ContentType": "application/x-ndjson",
            "ChecksumAlgorithm": "SHA256",
            "IfNoneMatch": "*",
            "ObjectLockMode": "COMPLIANCE",
            "ObjectLockRetainUntilDate": ANY,
        },
    )


def test_a_checkpoint_is_put_once_with_a_compliance_retention(witness, s3):
    client, stubber = s3
    record("test.event")
    calls = []
    client.meta.events.register(
        "provide-client-params.s3.PutObject", lambda params, **kw: calls.append(params)
    )
    expect_put(stubber)

    checkpoint = checkpoint_create()

    (params,) = calls
    assert params["Key"] == f"lanyard/{checkpoint.created_at:%Y/%m/%d}/{checkpoint.id:012d}-1.jsonl"
    assert (params["IfNoneMatch"], params["ObjectLockMode"]) == ("*", "COMPLIANCE")
    assert params["ObjectLockRetainUntilDate"] == checkpoint.created_at + dt.timedelta(days=30)
    body = params["Body"]
    assert (body if isinstance(body, bytes) else body.getvalue()) == record_line(checkpoint)


def test_a_refused_put_rolls_the_checkpoint_back(witness, s3):
    _, stubber = s3
    stubber.add_client_error("put_object", service_error_code="PreconditionFailed", http_status_code=412)

    with pytest.raises(WitnessError, match="cannot write the audit witness to s3://audit-lock/lanyard/"):
        checkpoint_create()


def test_audit_verify_reads_the_objects_back_and_compares(witness, s3, tamper):
    _, stubber = s3
    record("test.event")
    expect_put(stubber)
    checkpoint = checkpoint_create()
    key = witness.key_for(checkpoint)
    line = record_line(checkpoint)

    def expect_listing() -> None:
        stubber.add_response(
            "list_objects_v2",
            {"Contents": [{"Key": key, "Size": len(line)}], "IsTruncated": False},
            {"Bucket": "audit-lock", "Prefix": "lanyard/"},
        )
        stubber.add_response(
            "get_object",
            {"Body": StreamingBody(io.BytesIO(line), len(line))},
            {"Bucket": "audit-lock", "Key": key},
        )

    expect_listing()
    assert verify().witnessed == 1

    tamper(
        "DELETE FROM audit_auditevent",
        "DELETE FROM audit_auditcheckpoint",
        "DELETE FROM audit_auditchainhead",
    )
    expect_listing()
    problem = verify().first_problem
    assert "the witness's checkpoint" in problem.reason and "events removed from the tail" in problem.reason


def test_a_listing_failure_is_a_witness_error(witness, s3):
    _, stubber = s3
    stubber.add_client_error("list_objects_v2", service_error_code="AccessDenied", http_status_code=403)

    with pytest.raises(WitnessError, match="cannot read the audit witness"):
        list(witness.records())


def test_the_settings_build_a_client_for_the_bucket(settings):
    settings.LANYARD_AUDIT_WITNESS = "s3"
    settings.LANYARD_AUDIT_WITNESS_S3_BUCKET = "audit-lock"
    settings.LANYARD_AUDIT_WITNESS_S3_ENDPOINT_URL = "http://127.0.0.1:9"

    witness = configured_witness()

    assert isinstance(witness, S3Witness)
    assert witness.bucket == "audit-lock" and witness.prefix == "lanyard-audit/"
    assert witness.client.meta.endpoint_url == "http://127.0.0.1:9"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bucket": ""}, "BUCKET is required"),
        ({"mode": "LAX"}, "COMPLIANCE or GOVERNANCE"),
        ({"retention_days": 0}, "at least 1"),
    ],
)
def test_bad_settings_are_refused(s3, kwargs, message):
    client, _ = s3
    with pytest.raises(WitnessError, match=message):
        S3Witness(client, **{"bucket": "b", **kwargs})
