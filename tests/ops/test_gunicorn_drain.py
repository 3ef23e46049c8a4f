"""SIGTERM to gunicorn (the repo's gunicorn.conf.py) drains: a request in flight completes, then the
master exits; past GUNICORN_GRACEFUL_TIMEOUT a request is cut off (so the drain is that setting's doing)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 30) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - our own server
        return response.status, response.read()


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _answers(url: str) -> bool:
    try:
        return _get(url, timeout=2)[0] == 200
    except (OSError, urllib.error.URLError):
        return False


@pytest.fixture
def gunicorn(tmp_path):
    """Start gunicorn -c gunicorn.conf.py on the drain app (one worker); yield a starter, stop it after."""
    procs: list[subprocess.Popen] = []

    def start(*, slow: float, graceful: int) -> tuple[subprocess.Popen, str, Path]:
        port = _free_port()
        marker = tmp_path / "in-flight"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "DJANGO_SETTINGS"))}
        env.update(
            DJANGO_SETTINGS_MODULE="lanyard.settings",
            DEBUG="true",
            DATABASE_URL="",
            CELERY_BROKER_URL="",
            LANYARD_VAR_DIR=str(tmp_path / "var"),
            GUNICORN_BIND=f"127.0.0.1:{port}",
            WEB_CONCURRENCY="1",
            GUNICORN_GRACEFUL_TIMEOUT=str(graceful),
            DRAIN_MARKER=str(marker),
            DRAIN_SECONDS=str(slow),
        )
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        log = (tmp_path / "gunicorn.log").open("w")
        proc = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "tests.ops.drain_wsgi"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        _wait_for(lambda: _answers(f"{url}/health/live") or proc.poll() is not None, 60, "gunicorn to answer")
        assert proc.poll() is None, (tmp_path / "gunicorn.log").read_text()
        return proc, url, marker

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _slow_request_in_flight(url: str, marker: Path) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def call() -> None:
        try:
            outcome["status"], outcome["body"] = _get(f"{url}/__drain__")
        except Exception as exc:  # noqa: BLE001 - the cut-off case records what happened
            outcome["error"] = exc
        outcome["at"] = time.monotonic()

    thread = threading.Thread(target=call)
    thread.start()
    _wait_for(marker.exists, 10, "the slow request to reach the worker")
    return thread, outcome


def test_sigterm_lets_the_request_in_flight_finish_then_the_master_exits(gunicorn):
    proc, url, marker = gunicorn(slow=3, graceful=20)
    thread, outcome = _slow_request_in_flight(url, marker)

    signalled = time.monotonic()
    os.killpg(proc.pid, signal.SIGTERM)
    _wait_for(lambda: not _answers(f"{url}/health/live"), 5, "gunicorn to stop accepting")
    code = proc.wait(30)
    exited = time.monotonic()
    thread.join(10)

    assert outcome.get("status") == 200, outcome
    assert outcome["body"] != b""
    assert code == 0
    assert outcome["at"] <= exited  # answered before the master was gone
    assert exited - signalled >= 2  # the master waited for the request (it slept 3 s)


def test_a_request_longer_than_the_graceful_timeout_is_cut_off(gunicorn):
    proc, url, marker = gunicorn(slow=8, graceful=1)
    thread, outcome = _slow_request_in_flight(url, marker)

    signalled = time.monotonic()
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(30)
    thread.join(15)

    assert "status" not in outcome, outcome
    assert outcome["error"] is not None
    assert time.monotonic() - signalled < 8
