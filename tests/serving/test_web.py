"""The web page in a real headless Chromium (Debian's, driven by Playwright's Python API with
the system browser; no browser download): the service runs on a free 127.0.0.1 port, the
page lists users, a user is chosen, the recommendations appear with titles and genres, the
arm and the live metrics; liked titles give an anonymous user's list. A screenshot is kept
under ``$RECFORGE_ARTIFACTS_DIR`` (default ``tests/artifacts/``)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_app_support import VERSIONS, make_app

ARTIFACTS = Path(os.environ.get("RECFORGE_ARTIFACTS_DIR",
                                Path(__file__).resolve().parents[1] / "artifacts"))


def _chromium() -> str:
    """The Chromium executable (``RECFORGE_CHROMIUM``, default ``/usr/bin/chromium``); a
    missing browser skips, except on CI (``CI=true``), where it fails."""
    path = os.environ.get("RECFORGE_CHROMIUM", "/usr/bin/chromium")
    found = shutil.which(path)
    if found:
        return found
    message = f"no Chromium at {path} (set RECFORGE_CHROMIUM)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import uvicorn

    app = make_app(tmp_path_factory.mktemp("web") / "state")
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the service did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_web_page_in_headless_chromium(base_url: str) -> None:
    executable = _chromium()
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(base_url + "/", timeout=30_000)
            page.wait_for_function(
                "document.querySelectorAll('#user-select option').length > 10")
            page.select_option("#user-select", "1")
            page.click("#recommend-btn")
            page.wait_for_selector("#results li.item", timeout=30_000)
            items = page.locator("#results li.item")
            assert items.count() == 10
            titles = items.locator(".title").all_inner_texts()
            assert all(t.strip() for t in titles) and len(set(titles)) == 10
            assert any(g.strip() for g in items.locator(".genres").all_inner_texts())
            assert page.inner_text("#arm") == "default"
            assert page.inner_text("#version") == VERSIONS[-1]
            page.wait_for_function(
                "document.querySelector('#metrics').textContent.includes('list diversity')")
            assert "requests" in page.inner_text("#metrics")
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shot = ARTIFACTS / "web_user.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000

            # an anonymous user: two liked titles picked through the search box
            page.select_option("#user-select", "")
            liked = titles[0].split()[0]
            page.fill("#title-search", liked)
            page.wait_for_selector("#title-matches li")
            page.locator("#title-matches li").first.click()
            assert page.locator("#liked li").count() == 1
            page.click("#recommend-btn")
            page.wait_for_function(
                "document.querySelector('#summary').textContent.includes('1 liked titles')")
            assert page.locator("#results li.item").count() == 10
            page.screenshot(path=str(ARTIFACTS / "web_titles.png"), full_page=True)
            assert not errors, errors
        finally:
            browser.close()
