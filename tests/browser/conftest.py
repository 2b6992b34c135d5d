"""Browser ring: Chromium driven by Playwright against the live daphne server and a real Celery worker.

Playwright's sync API keeps an asyncio loop running in this thread for as long as it is started. Two
consequences shape the fixtures:

* Django's ORM sees that loop and raises SynchronousOnlyOperation, so DJANGO_ALLOW_ASYNC_UNSAFE is set
  while the browser runs (and only then).
* pytest-asyncio cannot start its own loop beside it, so the browser is package-scoped: it stops when
  the browser tests are done, before any async test (consumers) in the same session runs.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest
from django.conf import settings
from playwright.sync_api import Browser, Page, sync_playwright

from rvweb.celery import app as celery_app
from tests.conftest import Service

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path=os.environ.get("RVWEB_CHROMIUM", "/usr/bin/chromium"), headless=True, args=CHROMIUM_ARGS
            )
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser: Browser, daphne_server: Service) -> Iterator[Page]:
    """A fresh browser context (no cookies) whose relative URLs resolve against the live server."""
    context = browser.new_context(base_url=daphne_server.url)
    page = context.new_page()
    yield page
    context.close()


def _node_name(worker: Service) -> str:
    args = list(worker.process.args)  # type: ignore[arg-type]
    return str(args[args.index("--hostname") + 1]).replace("%h", socket.gethostname())


@pytest.fixture
def queue_held(celery_worker: Service) -> Callable[[], AbstractContextManager[None]]:
    """While held, the test worker takes no new task from its queue; jobs stay queued until released.

    A live test must see the job page render *before* the worker runs, or the page could already show
    the final state and prove nothing. The commands go to this session's worker only: a broadcast
    add_consumer would make other sessions' workers on a shared broker take our queue.
    """
    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    node = _node_name(celery_worker)

    @contextmanager
    def held() -> Iterator[None]:
        replies = celery_app.control.cancel_consumer(queue, destination=[node], reply=True, timeout=10)
        assert replies, f"worker {node} did not answer cancel_consumer\n{celery_worker.log_tail()}"
        try:
            yield
        finally:
            replies = celery_app.control.add_consumer(queue, destination=[node], reply=True, timeout=10)
            assert replies, f"worker {node} did not answer add_consumer\n{celery_worker.log_tail()}"

    return held
