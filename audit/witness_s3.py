"""The S3 witness: one object per checkpoint in a bucket with S3 Object Lock (or a compatible store).

Each checkpoint's witness record (``audit.witness.record_line``) is written as its own object,
``<prefix>YYYY/MM/DD/<id:012>-<sequence>.jsonl``, with an Object Lock retention date
(``LANYARD_AUDIT_WITNESS_S3_RETENTION_DAYS`` after the checkpoint, mode
``LANYARD_AUDIT_WITNESS_S3_MODE``, COMPLIANCE by default: nobody, the bucket's owner included,
can delete or overwrite that version before the date) and ``If-None-Match: *`` so an existing key
is never replaced. The bucket must have been created with Object Lock enabled (which enables
versioning). Credentials come from boto3's usual chain (environment, instance role, profile);
give the Lanyard role ``s3:PutObject``, ``s3:PutObjectRetention``, ``s3:ListBucket`` and
``s3:GetObject`` only. Objects are read back with ``ListObjectsV2`` and ``GetObject`` when
``audit_verify`` compares.

Tested with botocore's ``Stubber`` (the request shapes: parameters, retention, conditional write,
listing and reading back), not against a live S3 or MinIO service.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from django.conf import settings

from .witness import WitnessError, WitnessRecord, parse_record, record_line


class S3Witness:
    name = "s3"

    def __init__(
        self,
        client: Any,
        *,
        bucket: str,
        prefix: str = "",
        retention_days: int = 400,
        mode: str = "COMPLIANCE",
    ) -> None:
        if not bucket:
            raise WitnessError("LANYARD_AUDIT_WITNESS_S3_BUCKET is required for the s3 witness")
        if mode not in ("COMPLIANCE", "GOVERNANCE"):
            raise WitnessError("LANYARD_AUDIT_WITNESS_S3_MODE must be COMPLIANCE or GOVERNANCE")
        if retention_days < 1:
            raise WitnessError("LANYARD_AUDIT_WITNESS_S3_RETENTION_DAYS must be at least 1")
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.retention = dt.timedelta(days=retention_days)
        self.mode = mode

    @classmethod
    def from_settings(cls) -> S3Witness:
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=getattr(settings, "LANYARD_AUDIT_WITNESS_S3_ENDPOINT_URL", "") or None,
        )
        return cls(
            client,
            bucket=getattr(settings, "LANYARD_AUDIT_WITNESS_S3_BUCKET", ""),
            prefix=getattr(settings, "LANYARD_AUDIT_WITNESS_S3_PREFIX", "lanyard-audit/"),
            retention_days=getattr(settings, "LANYARD_AUDIT_WITNESS_S3_RETENTION_DAYS", 400),
            mode=getattr(settings, "LANYARD_AUDIT_WITNESS_S3_MODE", "COMPLIANCE"),
        )

    def key_for(self, checkpoint: Any) -> str:
        when = checkpoint.created_at.astimezone(dt.UTC)
        return f"{self.prefix}{when:%Y/%m/%d}/{checkpoint.id:012d}-{checkpoint.sequence}.jsonl"

    def write(self, checkpoint: Any) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=self.key_for(checkpoint),
                Body=record_line(checkpoint),
                ContentType="application/x-ndjson",
                ChecksumAlgorithm="SHA256",
                IfNoneMatch="*",
                ObjectLockMode=self.mode,
                ObjectLockRetainUntilDate=checkpoint.created_at.astimezone(dt.UTC) + self.retention,
            )
        except (BotoCoreError, ClientError) as exc:
            raise WitnessError(
                f"cannot write the audit witness to s3://{self.bucket}/{self.prefix}: {exc}"
            ) from None

    def records(self) -> Iterator[WitnessRecord | WitnessError]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix
            )
            for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"]
                    if not key.endswith(".jsonl"):
                        continue
                    body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
                    text = body.decode("ascii", errors="replace")
                    if text.count("\n") != 1 or not text.endswith("\n"):
                        yield WitnessError(f"{key}: not one witness line")
                        continue
                    try:
                        yield parse_record(text, key)
                    except WitnessError as exc:
                        yield exc
        except (BotoCoreError, ClientError) as exc:
            raise WitnessError(
                f"cannot read the audit witness from s3://{self.bucket}/{self.prefix}: {exc}"
            ) from None
