"""The production recipe's guarantees, on real Redis, PostgreSQL and Celery processes (services pass).

- exactly one beat sends: a second beat started by mistake waits on celery-redbeat's lock and takes
  over only when the first one dies;
- acks_late + the visibility timeout: revocations survive a worker killed with SIGKILL mid-task.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import connection

from connectors.models import Grant
from connectors.services import grant_revoke
from connectors.sync import sync_source
from lanyard.celery import app
from tests.simtools import make_source

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]


def _database_url() -> str:
    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def production_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A production process's environment: lanyard.settings (not the test settings), Redis, PostgreSQL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "DJANGO_SETTINGS"))}
    env.update(
        DJANGO_SETTINGS_MODULE="lanyard.settings",
        SECRET_KEY="production-recipe-test-" + uuid.uuid4().hex,
        LANYARD_ENCRYPTION_KEYS=",".join(settings.LANYARD_ENCRYPTION_KEYS),
        LANYARD_VAR_DIR=str(tmp_path / "var"),
        CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
        CACHE_URL=settings.CELERY_BROKER_URL,
        DATABASE_URL=_database_url(),
        EMAIL_URL="memorymail://",
        LOG_LEVEL="INFO",
        **extra,
    )
    return env


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(  # noqa: S603
        cmd, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _wait_for(predicate, timeout: float, what: str, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _heartbeats(r: redis.Redis) -> int:
    return sum(
        1
        for raw in r.lrange("default", 0, -1)
        if json.loads(raw)["headers"].get("task") == "lanyard.heartbeat"
    )


def test_a_second_beat_waits_on_the_lock_and_sends_nothing_until_the_first_dies(tmp_path):
    assert settings.CELERY_BROKER_URL.startswith("redis://"), "the services pass runs on Redis"
    r = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    r.delete("default")
    env = production_env(
        tmp_path,
        LANYARD_HEARTBEAT_SECONDS="1",
        CELERY_REDBEAT_KEY_PREFIX=f"lanyard:test-beat-{uuid.uuid4().hex[:8]}:",
        CELERY_REDBEAT_LOCK_TIMEOUT="4",
        CELERY_BEAT_MAX_LOOP_INTERVAL="1",
    )
    beat = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "lanyard",
        "beat",
        "-S",
        "redbeat.RedBeatScheduler",
        "-l",
        "DEBUG",
    ]
    first_log, second_log = tmp_path / "beat1.log", tmp_path / "beat2.log"
    first = _start(beat, env, first_log)
    second = None
    try:
        _wait_for(lambda: "beat: Acquired lock" in first_log.read_text(), 60, "the first beat's lock")
        second = _start(beat, env, second_log)
        _wait_for(lambda: ". lock -> `" in second_log.read_text(), 60, "the second beat to start")
        time.sleep(1)  # past its start-up, into acquiring the lock
        r.delete("default", "sync", "revoke", "mail")
        time.sleep(6)
        sent = _heartbeats(r)
        # One beat sends one heartbeat a second; two would send about twelve in six seconds.
        assert 4 <= sent <= 8, f"{sent} heartbeats in 6 s"
        assert "Acquired lock" not in second_log.read_text()
        assert "Sending due task" not in second_log.read_text()
        # Each heartbeat went to the default queue only, not copied into the others (where beat's
        # other entries, such as the SSF processor on `revoke`, do go).
        for queue in ("sync", "revoke", "mail"):
            tasks = [json.loads(raw)["headers"].get("task") for raw in r.lrange(queue, 0, -1)]
            assert "lanyard.heartbeat" not in tasks, (queue, tasks)

        _stop(first, signal.SIGKILL)  # no clean release: the lock must expire by itself
        _wait_for(lambda: "beat: Acquired lock" in second_log.read_text(), 30, "the second beat to take over")
        before = _heartbeats(r)
        _wait_for(lambda: _heartbeats(r) >= before + 2, 15, "heartbeats from the second beat")
    finally:
        _stop(first)
        if second is not None:
            _stop(second)
        r.delete("default")


@pytest.fixture
def eager_off():
    app.conf.task_always_eager = False
    yield
    app.conf.task_always_eager = True


def test_revocations_complete_when_a_worker_is_killed_mid_task(
    tmp_path, sim, transactional_db, iam, eager_off, settings
):
    settings.LANYARD_IDP_TIMEOUT = 10.0
    r = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    r.delete("revoke", "unacked", "unacked_index")
    source = make_source(sim, "okta")
    assert sync_source(source).outcome == "succeeded"
    grants = list(Grant.objects.filter(source=source, status=Grant.Status.ACTIVE).order_by("pk")[:6])
    assert len(grants) == 6
    # Each revocation at the IdP takes 1.5 s, so the kill lands while tasks are in flight.
    sim.faults(provider="okta", kind="slow", method="DELETE", delay=1.5, count=None)
    env = production_env(
        tmp_path,
        CELERY_VISIBILITY_TIMEOUT="5",
        CELERY_UNACKED_RESTORE_INTERVAL="1",
        LANYARD_IDP_TIMEOUT="10",
        # the dead worker's claim on a grant must lapse before its task is redelivered
        LANYARD_REVOKE_CLAIM_MINUTES="0.05",
    )
    worker = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "lanyard",
        "worker",
        "-Q",
        "revoke",
        "--concurrency",
        "2",
        "-l",
        "INFO",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    first_log, second_log = tmp_path / "worker1.log", tmp_path / "worker2.log"
    first = _start([*worker, "--hostname", "killed@%h"], env, first_log)
    second = None
    try:
        _wait_for(lambda: " ready." in first_log.read_text(), 60, "the first worker")
        for grant in grants:
            grant_revoke(grant=grant, actor=iam, reason="kill test")  # enqueued on commit (autocommit)
        _wait_for(lambda: first_log.read_text().count("revoke_grant_at_idp") >= 2, 30, "tasks to start")
        time.sleep(0.5)
        _stop(first, signal.SIGKILL)
        assert r.hlen("unacked") >= 1, "the killed worker left no task unacknowledged"
        second = _start([*worker, "--hostname", "survivor@%h"], env, second_log)

        def all_revoked():
            return (
                Grant.objects.filter(pk__in=[g.pk for g in grants], status=Grant.Status.REVOKED).count() == 6
            )

        _wait_for(all_revoked, 180, "every revocation to complete after the kill", step=0.5)
    finally:
        _stop(first, signal.SIGKILL)
        if second is not None:
            _stop(second)
        sim.clear_faults()
    for grant in grants:
        assert sim.grant_exists("okta", grant.external_id) is False


def test_pending_email_reads_the_mail_queue_on_redis(eager_off, settings):
    from governance.health import mail_queue_depth
    from governance.tasks import send_email

    r = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    r.delete("mail", "default")
    try:
        for n in range(3):
            send_email.delay(f"person{n}@example.com", "subject", "text", "<p>html</p>")
        assert mail_queue_depth() == 3
        assert r.llen("default") == 0
    finally:
        r.delete("mail")
