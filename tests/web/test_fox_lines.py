"""Choosing a transfer line: the given server wins, then a named provider, else the quickest line to
connect to; measured against real sockets on 127.0.0.1 (a listening port, and a closed one)."""

from __future__ import annotations

import pytest

from transfers.farm.base import TransferLine
from transfers.farm.fox.lines import LineNotFound, LineUnreachable, choose_line, connect_time, measure_all

FARM = [
    TransferLine("HKCT", "aspera", "127.0.0.1", 10221, is_default=True),
    TransferLine("CTCC", "aspera", "127.0.0.1", 10222),
    TransferLine("Europe", "raysync", "127.0.0.1", 10200, is_default=True),
]
TIMES = {10221: 0.050, 10222: 0.010, 10200: 0.030}


def _timed(host: str, port: int, timeout: float) -> float | None:
    return TIMES.get(port)


def test_connect_time_measures_a_listening_port(listening_port):
    seconds = connect_time("127.0.0.1", listening_port)

    assert seconds is not None and 0 <= seconds < 2


def test_connect_time_of_a_closed_port_is_none(closed_port):
    assert connect_time("127.0.0.1", closed_port) is None


def test_measure_all_times_every_line_by_name(listening_port, closed_port):
    lines = [TransferLine("up", "aspera", "127.0.0.1", listening_port), TransferLine("down", "aspera", "127.0.0.1", closed_port)]

    measured = measure_all(lines, timeout=1.0)

    assert set(measured) == {"up", "down"} and measured["up"] is not None and measured["down"] is None


def test_the_quickest_line_of_the_engine_is_chosen_and_the_reason_names_the_times():
    choice = choose_line(FARM, engine="aspera", measure=_timed)

    assert (choice.name, choice.host, choice.port, choice.engine) == ("CTCC", "127.0.0.1", 10222, "aspera")
    assert choice.measured == {"HKCT": 0.050, "CTCC": 0.010}
    assert "quickest" in choice.reason and "HKCT 50 ms" in choice.reason and "CTCC 10 ms" in choice.reason


def test_a_reachable_line_is_chosen_over_a_closed_one_on_real_sockets(listening_port, closed_port):
    lines = [
        TransferLine("closed", "aspera", "127.0.0.1", closed_port, is_default=True),
        TransferLine("open", "aspera", "127.0.0.1", listening_port),
    ]

    choice = choose_line(lines, engine="aspera", timeout=1.0)

    assert choice.name == "open" and choice.measured["closed"] is None and "closed unreachable" in choice.reason


def test_the_raysyncproxy_engine_uses_the_raysync_lines():
    choice = choose_line(FARM, engine="raysyncproxy", measure=_timed)

    assert (choice.name, choice.engine) == ("Europe", "raysync")


def test_an_internet_provider_picks_its_line_by_exact_name():
    choice = choose_line(FARM, engine="aspera", internet_provider="HKCT", measure=_timed)

    assert choice.name == "HKCT" and "internet_provider 'HKCT'" in choice.reason


def test_an_unknown_internet_provider_is_refused_listing_the_known_names():
    with pytest.raises(LineNotFound, match=r"no aspera line is named 'hkct'.*'HKCT', 'CTCC'"):
        choose_line(FARM, engine="aspera", internet_provider="hkct", measure=_timed)


def test_server_ip_and_port_override_every_line(listening_port):
    choice = choose_line(FARM, engine="aspera", server_ip="127.0.0.1", server_port=listening_port)

    assert (choice.host, choice.port) == ("127.0.0.1", listening_port)
    assert "server_ip and server_port given: they override the farm's lines" in choice.reason


def test_server_ip_alone_takes_the_port_of_the_line_that_would_be_chosen():
    choice = choose_line(FARM, engine="aspera", server_ip="127.0.0.2", measure=_timed)

    assert (choice.host, choice.port) == ("127.0.0.2", 10221) and "the rest from line 'HKCT'" in choice.reason


def test_without_automatic_lines_the_account_s_static_lines_are_used():
    static = [TransferLine("studio", "", "127.0.0.1", 10222, is_default=True)]

    choice = choose_line(FARM, engine="aspera", automatic_line=False, static_lines=static, measure=_timed)

    assert choice.name == "studio" and "the account's own lines" in choice.reason


def test_a_named_line_that_cannot_be_reached_says_which_and_why(closed_port):
    lines = [TransferLine("HKCT", "aspera", "127.0.0.1", closed_port)]

    with pytest.raises(LineUnreachable) as caught:
        choose_line(lines, engine="aspera", internet_provider="HKCT")

    assert str(caught.value) == f"line 'HKCT' (127.0.0.1:{closed_port}) cannot be reached: connection refused"


def test_when_no_line_can_be_reached_the_error_names_each(closed_port):
    lines = [TransferLine("HKCT", "aspera", "127.0.0.1", closed_port), TransferLine("CTCC", "aspera", "127.0.0.1", closed_port)]

    with pytest.raises(LineUnreachable, match=r"no aspera line can be reached: line 'HKCT' .*refused; line 'CTCC'") as caught:
        choose_line(lines, engine="aspera", timeout=1.0)

    assert [line.name for line in caught.value.lines] == ["HKCT", "CTCC"]


def test_an_engine_without_lines_is_refused():
    with pytest.raises(LineNotFound, match="the farm's lines give no trtt line"):
        choose_line(FARM, engine="trtt", measure=_timed)
