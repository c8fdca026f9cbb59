"""ARVADOS_SERVICE_INTERNAL_URL picks which Services.DispatchSLURM.InternalURLs entry this process serves.

Go (lib/service/cmd.go: getListenAddr): when the variable names an entry, the process listens on that entry's
ListenURL (else the entry itself) without trying the others; when it names none, it listens on the variable's
URL anyway, with a warning. We do the same, and refuse a value that is not a URL we could serve (exit 2, the
same line from ``run`` and ``config check``: tests/cli/test_cli_service_url.py).
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
from plugins.service_process import ServiceFactory, cluster_config, fake_slurm_commands, free_port
from plugins.waiting import wait_until

from slurm_dispatch.config import settings_from_documents
from slurm_dispatch.errors import ConfigError

KEY = "Services.DispatchSLURM.InternalURLs"
A, B = "http://127.0.0.1:9006", "http://10.1.2.3:9006/"
LISTEN = "http://0.0.0.0:9106/"
ENTRIES: dict[str, Any] = {A: {}, B: {"ListenURL": LISTEN}}


def load(entries: dict[str, Any], value: str | None) -> tuple[tuple[str, ...], list[str]]:
    body = {"Services": {"DispatchSLURM": {"InternalURLs": entries}}} if entries else {}
    environ = {} if value is None else {"ARVADOS_SERVICE_INTERNAL_URL": value}
    settings, warnings = settings_from_documents({"Clusters": {"zzzzz": body}}, source="c.yml", environ=environ)
    return settings.dispatch_internal_urls, [w for w in warnings if "InternalURL" in w]


def unmatched(url: str) -> str:
    return (f"possible configuration error: listening on {url} (from $ARVADOS_SERVICE_INTERNAL_URL) even though "
            "configuration does not have a matching InternalURLs entry")


@pytest.mark.parametrize(("value", "urls", "warnings"), [
    pytest.param(None, (LISTEN, A), [], id="unset: every entry, tried in turn (sorted)"),
    pytest.param("", (LISTEN, A), [], id="empty: unset, as in Go"),
    pytest.param(A, (A,), [], id="names an entry"),
    pytest.param(A + "/", (A,), [], id="a trailing slash does not matter"),
    pytest.param("HTTP://127.0.0.1:9006/", (A,), [], id="nor the scheme's case"),
    pytest.param(B, (LISTEN,), [], id="an entry with a ListenURL: listen there"),
    pytest.param("http://10.1.2.3:9006", (LISTEN,), [], id="the same entry, without its slash"),
    pytest.param("http://127.0.0.1:9007/", ("http://127.0.0.1:9007/",), [unmatched("http://127.0.0.1:9007/")],
                 id="names no entry: listened on, with Go's warning"),
    pytest.param("http://localhost:9006", ("http://localhost:9006",), [unmatched("http://localhost:9006/")],
                 id="another name for the same address is another URL"),
])
def test_the_variable_picks_an_entry(value: str | None, urls: tuple[str, ...], warnings: list[str]) -> None:
    assert load(ENTRIES, value) == (urls, warnings)


def test_an_https_entry_with_an_http_listen_url_can_be_picked() -> None:
    entries = {"https://dispatch.example:9006/": {"ListenURL": "http://127.0.0.1:9006/"}}
    assert load(entries, "https://dispatch.example:9006/") == (("http://127.0.0.1:9006/",), [])


def test_no_internal_urls_at_all_but_the_variable() -> None:
    assert load({}, "http://127.0.0.1:9006/") == (("http://127.0.0.1:9006/",), [unmatched("http://127.0.0.1:9006/")])


@pytest.mark.parametrize(("value", "message"), [
    pytest.param("localhost:9006", "expected a URL like http://host:port/ naming one of "
                 f"{KEY}, got 'localhost:9006'", id="no scheme"),
    pytest.param("http://:9006/", f"expected a URL like http://host:port/ naming one of {KEY}, got 'http://:9006/'",
                 id="no host"),
    pytest.param("ftp://127.0.0.1:9006/", "expected a URL like http://host:port/ naming one of "
                 f"{KEY}, got 'ftp://127.0.0.1:9006/'", id="not http"),
    pytest.param("http://127.0.0.1:99999/", "expected a URL like http://host:port/ (Port out of range 0-65535), "
                 "got 'http://127.0.0.1:99999/'", id="port out of range"),
    pytest.param("http://127.0.0.1:9006/\n", "must not contain whitespace or control characters, got "
                 "'http://127.0.0.1:9006/\\n'", id="newline"),
    pytest.param(" http://127.0.0.1:9006/", "must not contain whitespace or control characters, got "
                 "' http://127.0.0.1:9006/'", id="space"),
    pytest.param("http://127.0.0.1/", f"names no {KEY} entry, so it is where the health and metrics endpoint "
                 "listens, and that must be http:// with an explicit port, got 'http://127.0.0.1/'", id="no port"),
    pytest.param("https://127.0.0.1:9007/", f"names no {KEY} entry, so it is where the health and metrics "
                 "endpoint listens, and that must be http:// with an explicit port, got 'https://127.0.0.1:9007/'",
                 id="https, no entry"),
    pytest.param("http://u:secret@127.0.0.1:9006/", "a URL with user:password@ is not supported",
                 id="user and password, not shown"),
])
def test_a_malformed_value_is_refused_with_one_line(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(ENTRIES, value)
    assert str(info.value) == f"ARVADOS_SERVICE_INTERNAL_URL: {message}"
    assert "secret" not in str(info.value)


def test_the_service_listens_where_the_variable_says(
    service_process: ServiceFactory, emulator: Any, tmp_path: Path,
) -> None:
    first, second = free_port(), free_port()
    cluster = cluster_config(emulator=emulator, port=first, out_dir=tmp_path, internal_urls={
        f"http://127.0.0.1:{first}": {}, f"http://127.0.0.1:{second}/": {}})
    svc = service_process(slurm_env=fake_slurm_commands(tmp_path / "bin"), port=second, cluster=cluster,
                          env={"ARVADOS_SERVICE_INTERNAL_URL": f"http://127.0.0.1:{second}"})
    # without the variable the first entry, which binds, would be used
    wait_until(lambda: not svc.alive() or svc.answers(), timeout=60, what=f"the endpoint on :{second} ({svc.log})")
    assert svc.alive(), svc.logs()
    assert f"health and metrics endpoint listening on 127.0.0.1:{second}" in svc.logs()
    assert "possible configuration error" not in svc.logs()
    code, _ = svc.stop(signal.SIGTERM, within=15)
    assert code == 0, svc.logs()
