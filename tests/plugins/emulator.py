"""Fixtures for the Arvados API emulator: a fresh in-memory HTTPS server per test.

``emulator`` is the running ``EmulatorServer`` (``.base_url``, ``.api_host``,
``.root_token``); ``emulator_control`` is a ``SandboxControl`` bound to it; ``arv`` is an
``ApiCaller`` (plain ``requests``) with the root token, for HTTP contract tests.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import urllib3

from slurm_dispatch.sandbox.api import EmulatorServer
from slurm_dispatch.sandbox.control import SandboxControl

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)


def pytest_configure(config: pytest.Config) -> None:
    """The emulator's certificate is self-signed on purpose: silence urllib3's warning about it."""
    config.addinivalue_line("filterwarnings", "ignore::urllib3.exceptions.InsecureRequestWarning")


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    """A fresh in-memory HTTPS emulator, cluster ``zzzzz``, stopped after the test."""
    server = EmulatorServer(root_token="systemusertesttoken1234567890aoeuidhtnsqjkxbmwvzpy")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def emulator_control(emulator: EmulatorServer) -> Iterator[SandboxControl]:
    """A SandboxControl for the ``emulator`` fixture."""
    control = SandboxControl(emulator.base_url)
    try:
        yield control
    finally:
        control.close()


class ApiCaller:
    """Plain ``requests`` calls to the emulated API with one token (the HTTP contract, no client library).

    Every method blocks for one request and returns the ``requests.Response``.
    """

    def __init__(self, base_url: str, token: str):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.session = requests.Session()

    def request(self, method: str, path: str, *, token: str | None = None, **kwargs: Any) -> requests.Response:
        """Send ``method path`` with ``Authorization: Bearer <token>`` (TLS unverified)."""
        headers = dict(kwargs.pop("headers", {}) or {})
        tok = self.token if token is None else token
        if tok:
            headers.setdefault("Authorization", f"Bearer {tok}")
        kwargs.setdefault("timeout", 30)
        return self.session.request(method, self.base_url + path, headers=headers, verify=False, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PUT", path, **kwargs)

    def lock(self, uuid: str, **kwargs: Any) -> requests.Response:
        return self.post(f"/arvados/v1/containers/{uuid}/lock", **kwargs)

    def unlock(self, uuid: str, **kwargs: Any) -> requests.Response:
        return self.post(f"/arvados/v1/containers/{uuid}/unlock", **kwargs)

    def update(self, uuid: str, attrs: dict[str, Any], **kwargs: Any) -> requests.Response:
        """PUT ``container=<json>`` form-encoded, as the Go SDK sends it."""
        return self.put(f"/arvados/v1/containers/{uuid}", data={"container": json.dumps(attrs)}, **kwargs)

    def container(self, uuid: str, **kwargs: Any) -> dict[str, Any]:
        resp = self.get(f"/arvados/v1/containers/{uuid}", **kwargs)
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    def list(self, **params: Any) -> requests.Response:
        """GET the container list; non-string params are JSON-encoded as the Go SDK does."""
        enc = {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}
        return self.get("/arvados/v1/containers", params=enc)


@pytest.fixture
def arv(emulator: EmulatorServer) -> Iterator[ApiCaller]:
    """An ApiCaller with the emulator's root (dispatcher) token."""
    caller = ApiCaller(emulator.base_url, emulator.root_token)
    try:
        yield caller
    finally:
        caller.session.close()


@pytest.fixture
def make_emulator() -> Iterator[Callable[..., tuple[EmulatorServer, ApiCaller]]]:
    """A factory: ``make_emulator(**EmulatorServer kwargs)`` starts a server (stopped after the test)
    and returns it with an ApiCaller holding its root token."""
    started: list[tuple[EmulatorServer, ApiCaller]] = []

    def make(**kwargs: Any) -> tuple[EmulatorServer, ApiCaller]:
        server = EmulatorServer(**kwargs)
        server.start()
        pair = (server, ApiCaller(server.base_url, server.root_token))
        started.append(pair)
        return pair

    try:
        yield make
    finally:
        for server, caller in started:
            caller.session.close()
            server.stop()
