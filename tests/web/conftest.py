"""The page in a real browser: Debian's Chromium driven by Playwright, against the real stack.

One stack for the module (gunicorn gthread as in production, one worker on
the background-removal and light queues, an embedded Redis), one browser.
Screenshots go to tests/screenshots/ (git-ignored): look at them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from imgproc.config import ROOT

SCREENSHOTS = ROOT / "tests" / "screenshots"


@pytest.fixture(scope="module")
def web_stack(tmp_path_factory):
    """The API and a worker, a photo server whose routes a test may change, an operator and a vendor."""
    from imgproc.adapters.db import make_engine
    from imgproc.adapters.vendors import Vendors
    from imgproc.testing import LocalStack, PhotoServer, local_env, sample_photos

    var = tmp_path_factory.mktemp("web")
    photos = sample_photos()
    routes = {f"/{name}.jpg": data for name, data in photos.items()}
    server = PhotoServer(lambda path: routes.get(path), keep_alive=True)
    saved = os.environ.pop("REDIS_URL", None)
    try:
        with LocalStack(var / "var", local_env(var)) as stack:
            stack.callback(server.close)
            # The worker loads ISNet while the API starts.
            workers = stack.start_workers(1, "bg-removal,image-processing")
            stack.start_api(processes=1, threads=16, config=str(ROOT / "deploy" / "gunicorn.conf.py"))
            stack.wait_workers(workers)
            engine = make_engine(stack.settings())
            vendors = Vendors(engine)
            keys = {"acme": vendors.add("acme"), "ops": vendors.add("ops", operator=True)}
            engine.dispose()
            files = var / "photos"
            files.mkdir()
            for name, data in photos.items():
                (files / f"{name}.jpg").write_bytes(data)
            yield {
                "stack": stack,
                "base": stack.api,
                "keys": keys,
                "server": server,
                "routes": routes,
                "photos": photos,
                "files": files,
            }
    finally:
        if saved is not None:
            os.environ["REDIS_URL"] = saved


@pytest.fixture
def page_for(browser, web_stack):
    """``page_for("acme")``: a new browser context signed in as that vendor; dialogs fail the test."""
    contexts, dialogs = [], []

    def make(vendor: str, width: int = 1280, height: int = 800):
        context = browser.new_context(
            viewport={"width": width, "height": height}, accept_downloads=True, base_url=web_stack["base"]
        )
        contexts.append(context)
        page = context.new_page()
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.on("pageerror", lambda exc: dialogs.append(f"script error: {exc}"))
        page.goto("/")
        page.get_by_label("API key").fill(web_stack["keys"][vendor])
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(re.compile(r"/ui/$"))
        return page

    yield make
    for context in contexts:
        context.close()
    assert not dialogs, f"the page opened a dialog or raised: {dialogs}"


def screenshot(page, name: str, full_page: bool = False) -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    # A page, or one element of it (a Locator has no full_page).
    page.screenshot(path=str(path), **({"full_page": True} if full_page else {}))
    return path
