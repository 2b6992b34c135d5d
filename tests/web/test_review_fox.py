"""Review of the Fox Renderfarm / Renderbus work (issue 9): a hostile farm, a careless or hostile user."""

from __future__ import annotations

import threading
import time

import pytest
from rest_framework.test import APIClient

from tests import fox_farm as fake
from tests.fox_farm import task_info
from transfers.farm import FarmError, connector_for
from transfers.farm.fox import client as fox_client
from transfers.farm.fox import outputs


def _api(user) -> APIClient:
    api = APIClient()
    api.force_authenticate(user)
    return api


# --- a farm that misbehaves --------------------------------------------------------------------------


def test_review_a_farm_that_ignores_the_page_number_is_not_asked_a_thousand_times(fox_farm, fox_account, monkeypatch):
    def endless(farm, me, body):  # every page the same first page, and "more pages" forever
        return {"pageCount": 10**6, "pageNum": body.get("pageNum"), "total": 10**8, "size": 100, "items": [task_info(1001, 25)]}

    monkeypatch.setitem(fake.ROUTES, fox_client.TASK_LIST, endless)

    tasks = connector_for(fox_account()).tasks()

    assert [t.task_id for t in tasks] == [1001]
    assert len(fox_farm.calls(fox_client.TASK_LIST)) <= 3, "one farm page render asked for every page up to MAX_PAGES"


def test_review_bad_names_in_an_output_listing_are_skipped(fox_farm, fox_account, monkeypatch):
    names = ["..", ".", "/etc/passwd", "a/../../x", "..\\x", "nul\x00x", "", "ok.exr"]

    def listing(farm, me, body):
        return [{"fileName": n, "fileSize": 1, "directory": False, "lastModify": "x"} for n in names]

    monkeypatch.setitem(fake.ROUTES, fox_client.OUTPUT_FILES, listing)

    assert [f.path for f in connector_for(fox_account()).list_output("")] == ["ok.exr"]


def test_review_an_output_listing_cut_short_by_the_folder_bound_is_not_taken_for_the_whole(fox_farm, fox_account, monkeypatch):
    monkeypatch.setattr(outputs, "MAX_FOLDERS", 3)
    for n in range(6):
        fox_farm.add_output(f"1001_done_shot/layer{n}/frame.exr", b"x")

    connector = connector_for(fox_account())

    with pytest.raises(FarmError):  # today: 2 of 6 frames, silently, and the download "completes"
        connector.outputs(1001)


@pytest.mark.django_db(transaction=True)
def test_review_the_farm_page_does_not_hang_on_a_farm_that_never_answers(fox_account, make_user, client, listening_port):
    account = fox_account(domain=f"http://127.0.0.1:{listening_port}")  # accepts, never answers
    lead = make_user(team=account.team, role="lead")
    client.force_login(lead)
    answered: list[int] = []
    page = threading.Thread(target=lambda: answered.append(client.get(f"/farm/{account.pk}/").status_code), daemon=True)
    started = time.monotonic()
    page.start()
    page.join(timeout=30)

    assert answered == [200], f"the farm page had not answered after {time.monotonic() - started:.0f}s"


@pytest.mark.django_db(transaction=True)
def test_review_the_farm_tasks_api_does_not_hang_on_a_farm_that_never_answers(fox_account, make_user, listening_port):
    account = fox_account(domain=f"http://127.0.0.1:{listening_port}")
    api = _api(make_user(team=account.team, role="member"))
    answered: list[int] = []
    call = threading.Thread(target=lambda: answered.append(api.get(f"/api/farm/{account.pk}/tasks/").status_code), daemon=True)
    call.start()
    call.join(timeout=30)

    assert answered == [502], "the farm tasks API had not answered after 30 s"
