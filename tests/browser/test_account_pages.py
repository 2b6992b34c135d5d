"""Farm accounts in the browser: a lead adds one (its key then shown only as "set"), edits it, and runs
"Test connection"; a member sees the list without any way to edit."""

from __future__ import annotations

import re
import uuid

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import Page, expect

from transfers.models import FarmAccount, Membership, Team

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "browser-pw-4711"
KEY = "browser-access-key-9c2e"


def _user(team: Team, role: str) -> str:
    name = f"{role}-{uuid.uuid4().hex[:6]}"
    user = get_user_model().objects.create_user(name, password=PASSWORD)
    Membership.objects.create(user=user, team=team, role=role)
    return name


def _log_in(page: Page, username: str) -> None:
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Farm").click()
    expect(page.get_by_role("heading", name="Farm accounts")).to_be_visible()


def test_a_lead_adds_edits_and_tests_an_account(page: Page):
    team = Team.objects.create(name=f"Team {uuid.uuid4().hex[:6]}")
    _log_in(page, _user(team, "lead"))
    name = f"Browser farm {uuid.uuid4().hex[:6]}"

    page.get_by_role("link", name="Add a farm account").click()
    page.get_by_label("Name").fill(name)
    page.get_by_label("Team").select_option(label=team.name)
    page.get_by_label("Kind").select_option("local")
    page.get_by_label("Access id").fill("studio-id")
    page.get_by_label("Access key").fill(KEY)
    page.get_by_label("Transfer lines").fill("main 10.0.0.5:7300")
    page.get_by_label("Path mapping").fill("D:/ => /mnt/studio/D/")
    page.get_by_label("Default pool_size (files at once)").fill("8")
    page.get_by_role("button", name="Save").click()

    expect(page.locator(".message.success")).to_contain_text(f"Farm account {name} saved.")
    expect(page.locator("#key-state")).to_have_text("Access key: set")
    expect(page.get_by_label("Access key")).to_have_value("")  # never rendered back
    assert KEY not in page.content()

    page.get_by_label("Transfer lines").fill("main 10.0.0.5")  # no port: a form error, nothing saved
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".errorlist")).to_contain_text("name host:port")
    page.get_by_label("Transfer lines").fill("main 10.0.0.5:7300\nbackup 10.0.0.6:7300")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".message.success")).to_be_visible()
    expect(page.locator("#key-state")).to_have_text("Access key: set")  # the empty field kept the key
    account = FarmAccount.objects.get(name=name)
    assert (account.access_key, len(account.transfer_lines)) == (KEY, 2)

    page.get_by_role("button", name="Test connection").click()
    expect(page.locator("#check-result")).to_contain_text("Test connection passed")
    expect(page.locator("#check-result li.ok")).to_have_count(13)

    page.get_by_role("link", name="All accounts").click()
    row = page.locator("tr", has_text=name)
    expect(row).to_contain_text("set")
    expect(row.get_by_role("link", name="Edit")).to_be_visible()


def test_a_member_sees_the_accounts_but_cannot_edit_them(page: Page):
    team = Team.objects.create(name=f"Team {uuid.uuid4().hex[:6]}")
    account = FarmAccount.objects.create(name=f"Member farm {uuid.uuid4().hex[:6]}", team=team, access_key=KEY)
    _log_in(page, _user(team, "member"))

    row = page.locator("tr", has_text=account.name)
    expect(row).to_be_visible()
    expect(row.get_by_role("link", name="Edit")).to_have_count(0)
    expect(page.get_by_role("link", name="Add a farm account")).to_have_count(0)
    response = page.goto(f"/farm/{account.pk}/edit")
    assert response is not None and response.status == 403
    assert not re.search(KEY, page.content())


def test_a_lead_adds_an_sftp_account_and_test_connection_pins_its_host_key(page: Page, tmp_path):
    """The kind's own fieldset (the others hidden), a private key pasted into the one-line key field,
    and the first Test connection pinning the server's host key, its fingerprint shown."""
    from tests.servers.sshd import shared_sshd

    server = shared_sshd()
    base = tmp_path / "nas"
    base.mkdir()
    team = Team.objects.create(name=f"Team {uuid.uuid4().hex[:6]}")
    _log_in(page, _user(team, "lead"))
    name = f"NAS {uuid.uuid4().hex[:6]}"

    page.get_by_role("link", name="Add a farm account").click()
    page.get_by_label("Name").fill(name)
    page.get_by_label("Team").select_option(label=team.name)
    page.get_by_label("Kind").select_option("sftp")
    expect(page.locator("#storage-sftp")).to_be_visible()
    expect(page.locator("#storage-s3")).to_be_hidden()
    page.get_by_label("Access id").fill(server.username)
    page.get_by_label("Access key").fill(server.private_key)  # the browser drops its line breaks
    page.get_by_label("SFTP host").fill(server.host)
    page.get_by_label("SFTP port").fill(str(server.port))
    page.get_by_label("Base path").fill(str(base))
    page.get_by_role("button", name="Save").click()

    expect(page.locator(".message.success")).to_contain_text(f"Farm account {name} saved.")
    expect(page.get_by_label("Pinned host key")).to_have_value("")
    page.get_by_role("button", name="Test connection").click()

    result = page.locator("#check-result")
    expect(result).to_contain_text("Test connection passed")
    expect(result).to_contain_text(f"{server.fingerprint}, pinned now (first use)")
    expect(page.get_by_label("Pinned host key")).to_have_value(server.host_key)
    assert "PRIVATE KEY" not in page.content()
    assert (base / "input").is_dir() and (base / "output").is_dir()
