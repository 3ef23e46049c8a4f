"""Pytest plugin: every answer the simulator serves must conform to the provider's official description.

While a test runs (setup, call and teardown), every 2xx answer of the simulated provider APIs is
recorded (``simulator.server.OBSERVERS`` for simulators started in this process; JSON-lines files
for ``simulator.spawn()`` children, through ``LANYARD_SIM_RECORD``). At the end of each phase the
answers are validated against tests/contracts/<provider>.json; a non-conforming one fails the test
that made the simulator serve it, naming the operation, the JSON path and what is wrong.

A test that serves a bad answer on purpose takes the problems with ``contract_problems()`` (which
clears them) and asserts on them.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest

from simulator import server
from tests.contracts import contract

_lock = threading.Lock()
_served: list[tuple[str, str, str, int, Any]] = []
_offsets: dict[Path, int] = {}
_record_dir: tempfile.TemporaryDirectory | None = None


def _observe(provider: str, method: str, path: str, status: int, body: Any) -> None:
    with _lock:
        _served.append((provider, method, path, status, body))


def _read_children() -> list[tuple[str, str, str, int, Any]]:
    import json

    out = []
    if _record_dir is None:
        return out
    for f in sorted(Path(_record_dir.name).glob("*.jsonl")):
        with f.open("rb") as fh:
            fh.seek(_offsets.get(f, 0))
            data = fh.read()
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next read
        _offsets[f] = _offsets.get(f, 0) + end
        for line in data[:end].splitlines():
            r = json.loads(line)
            out.append((r["provider"], r["method"], r["path"], r["status"], r["body"]))
    return out


def served() -> list[tuple[str, str, str, int, Any]]:
    """Take (and clear) the answers recorded so far."""
    with _lock:
        taken = list(_served)
        _served.clear()
    return taken + _read_children()


def contract_problems() -> list[str]:
    """Validate and clear what was served so far; return the problems (empty: all conformed)."""
    problems: list[str] = []
    seen: set[str] = set()
    for provider, method, path, status, body in served():
        for p in contract.check(provider, method, path, status, body):
            if p not in seen:  # one bad shape repeats on every page: report it once
                seen.add(p)
                problems.append(p)
    return problems


class ContractViolation(AssertionError):
    """The simulator served an answer that the provider's official description does not allow."""


def _verify(phase: str) -> None:
    problems = contract_problems()
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ContractViolation(
            f"the simulator served {len(problems)} answer shape(s) the official API description "
            f"does not allow (during {phase}; see tests/contracts/):\n  {shown}{more}"
        )


def pytest_configure(config: pytest.Config) -> None:
    global _record_dir
    _record_dir = tempfile.TemporaryDirectory(prefix="lanyard-sim-record-")
    os.environ[server.RECORD_ENV] = _record_dir.name
    server.OBSERVERS.append(_observe)


def pytest_unconfigure(config: pytest.Config) -> None:
    global _record_dir
    if _observe in server.OBSERVERS:
        server.OBSERVERS.remove(_observe)
    os.environ.pop(server.RECORD_ENV, None)
    if _record_dir is not None:
        _record_dir.cleanup()
        _record_dir = None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item):
    served()  # whatever came before this test (another test's late answer) is not this test's
    result = yield
    _verify("setup")
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    result = yield
    _verify("the test")
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None):
    result = yield
    _verify("teardown")
    return result
