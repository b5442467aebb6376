"""Browser tests: Debian's Chromium driven by Playwright's Python package, against a real worker.

Chromium comes from Debian (``make test`` runs ``make chromium``, which installs it when
missing); Playwright's own browser download (``playwright install``) is never used. Outside CI a
machine without ``/usr/bin/chromium`` skips these tests; in CI (``CI`` set) that is a failure.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

import pytest
from aiohttp import web

from app.broker import EmbeddedBroker
from tests.support.harness import Deployment, Worker, free_port

CHROMIUM = os.environ.get("EVENTIDE_TEST_CHROMIUM") or shutil.which("chromium") \
    or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
DOCS = Path(__file__).resolve().parents[2] / "docs"
VIEWPORT = {"width": 1440, "height": 900}  # a laptop screen

SHOP_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Test shop</title>
<script>
  window._cio = window._cio || [];
  (function() {
    var a,b,c;a=function(f){return function(){_cio.push([f].concat(Array.prototype.slice.call(arguments,0)))}};
    b=["identify","track","page"];for(c=0;c<b.length;c++){_cio[b[c]]=a(b[c])};
    var t = document.createElement('script'), s = document.getElementsByTagName('script')[0];
    t.async = true;
    t.id    = 'cio-tracker';
    t.setAttribute('data-site-id', '%(site_id)s');
    t.src = '%(worker)s/js/track.js';
    s.parentNode.insertBefore(t, s);
  })();
  // Called before track.js has loaded: queued by the stub, sent once it loads.
  _cio.page();
  _cio.track('viewed_pricing', {plan: 'pro'});
</script>
</head>
<body><h1>Test shop</h1></body>
</html>
"""


@dataclass
class Shop:
    """A worker plus a test page served from another origin that embeds the snippet."""

    deployment: Deployment
    worker: Worker
    page_url: str

    @property
    def url(self) -> str:
        return self.deployment.url


@pytest.fixture(scope="module")
async def shop(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
               ) -> AsyncIterator[Shop]:
    page_port = free_port()
    page_origin = f"http://localhost:{page_port}"
    deployment = Deployment(broker.bootstrap_servers, tmp_path_factory.mktemp("console"))
    await deployment.create_topics()
    worker = Worker(deployment, EVENTIDE_CORS_ORIGINS=page_origin).start()

    async def shop_page(request: web.Request) -> web.Response:
        return web.Response(text=SHOP_PAGE % {"site_id": deployment.settings.site_id,
                                              "worker": deployment.url},
                            content_type="text/html")

    application = web.Application()
    application.router.add_get("/shop", shop_page)
    async def no_icon(request: web.Request) -> web.Response:
        return web.Response(status=204)

    application.router.add_get("/favicon.ico", no_icon)
    runner = web.AppRunner(application, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "localhost", page_port).start()
    try:
        await worker.wait_ready()
        yield Shop(deployment, worker, f"{page_origin}/shop")
    finally:
        worker.stop()
        await runner.cleanup()


@pytest.fixture(scope="module")
async def chromium():  # type: ignore[no-untyped-def]
    if not os.path.exists(CHROMIUM):
        message = f"no Chromium at {CHROMIUM}: run `make chromium` (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM,
                                                   args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            await browser.close()
