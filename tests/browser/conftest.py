"""Headless Chromium against the running processes: the stack of tests/system (the Procfile under
honcho, with its own database, Redis index and bucket for this package), driven by Playwright.

The browser is the machine's Debian `chromium` (`make test` installs it when missing and run as root);
Playwright only drives it and never downloads one. Without it these tests are skipped with the reason,
except on CI (CI=true), where they fail instead, so that CI cannot pass without running them.
"""
from __future__ import annotations

import os
import shutil

import pytest

from shared.settings import Settings
from shared.storage import Storage
# The running stack's fixtures, instantiated again for this package (its own database and bucket).
from tests.system.conftest import admin, admin_key, other_partner, partner, stack, stack_env  # noqa: F401,F811

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 740}


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def browser_missing() -> str | None:
    """Why Chromium cannot be driven here, or None."""
    if chromium() is None:
        return ("no `chromium` on PATH: install Debian's chromium (`apt-get install chromium`; "
                "`make test` does it when run as root)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    return None


@pytest.fixture(scope="package")
def browser():
    missing = browser_missing()
    if missing:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true and the browser tests cannot run: {missing}")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser, stack):  # noqa: F811
    """A fresh browser context (no cookies) at desktop size, on the stack's URL."""
    context = browser.new_context(base_url=stack.url, viewport=DESKTOP, accept_downloads=True)
    context.set_default_timeout(30_000)
    yield context.new_page()
    context.close()


@pytest.fixture
def stack_storage(stack) -> Storage:  # noqa: F811
    """The stack's bucket, to make a job fail for real (its original deleted before a worker reads it)."""
    return Storage(Settings(**{k.lower(): v for k, v in stack.env.items()
                               if k.lower() in Settings.model_fields}))
