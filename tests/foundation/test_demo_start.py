"""`make run` starts quietly: the demo's worker line from the Procfile, and a clear word on a taken port."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _procfile_command(name: str) -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {name} line in the Procfile")


def _demo_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CELERY_", "DATABASE_"))}
    env.update(DEBUG="true", LANYARD_VAR_DIR=str(tmp_path / "var"), **extra)
    return env


def test_the_demo_worker_starts_without_warnings(tmp_path):
    command = _procfile_command("worker").replace("%h", "quiet-test")
    proc = subprocess.Popen(
        command,
        shell=True,
        cwd=ROOT,
        env=_demo_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 1)
            if not ready:
                continue
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if " ready." in line:
                break
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
    log = "".join(lines)
    assert " ready." in log, log
    for noise in ("SecurityWarning", "superuser privileges", "No hostname was supplied", "WARNING"):
        assert noise not in log, log


def test_a_taken_web_port_is_named_with_the_setting_to_change(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            ["bash", "scripts/run-demo"],
            cwd=ROOT,
            env=_demo_env(tmp_path, LANYARD_WEB_PORT=str(port)),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"Port {port} on 127.0.0.1 (for the web server) is already taken" in result.stderr
    assert "LANYARD_WEB_PORT=NNNN make run" in result.stderr
