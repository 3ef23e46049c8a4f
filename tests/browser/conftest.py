"""Browser fixtures: a live server, Debian's Chromium driven by Playwright, and persona logins.

The browser is never downloaded: Playwright launches ``/usr/bin/chromium`` (``make browser-deps``
installs Debian's package). Logging in as a persona sets a Django session cookie in a fresh browser
context, so staff with TOTP need no code and every persona costs one database row.

Reuse from another browser test file::

    def test_something(live_server, persona_page, iam):
        page = persona_page(iam)
        page.goto(live_server.url + "/inbox/")
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

# Playwright's sync API runs an event loop in the test thread; the ORM calls the tests make between
# browser steps are still synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("LANYARD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(settings.BASE_DIR) / "docs" / "screenshots"


def launch_browser() -> Iterator:
    """One headless Chromium for the session (Debian's, never a downloaded one).

    The ``browser`` fixture that yields it is defined once, in ``tests/conftest.py``: Playwright's sync
    API allows one instance per thread, so every directory's browser tests must share that one.
    """
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser-deps` (apt-get install chromium).")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


def session_cookie(user, url: str) -> dict:
    """Return a session cookie for ``user`` on ``url``, made the way Django's test client logs in."""
    client = Client()
    client.force_login(user)
    return {
        "name": settings.SESSION_COOKIE_NAME,
        "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
        "url": url,
    }


@pytest.fixture
def persona_page(browser, live_server) -> Iterator[Callable]:
    """Return ``open(user)``: a new browser page logged in as ``user`` (its own context and cookies)."""
    contexts = []

    def open_as(user):
        context = browser.new_context(viewport={"width": 1360, "height": 900}, base_url=live_server.url)
        context.set_default_timeout(15_000)
        if user is not None:
            context.add_cookies([session_cookie(user, live_server.url)])
        contexts.append(context)
        return context.new_page()

    yield open_as
    for context in contexts:
        context.close()


@pytest.fixture
def screenshot() -> Callable:
    """Return ``shot(page, name)``: save a full-page PNG under docs/screenshots/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def shot(page, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return shot
