"""A client for the emulator's ``/_sandbox/`` control endpoints (tests and the demo use it).

Every method makes one HTTP request to the emulator and blocks until it answers.
TLS is not verified: the emulator's certificate is self-signed. ``verify=False``
is passed on each request because ``REQUESTS_CA_BUNDLE`` in the environment
would otherwise override a session-wide setting.
"""

from __future__ import annotations

from typing import Any

import requests
import urllib3

from slurm_dispatch.errors import ArvadosAPIError


class SandboxControl:
    """Drives an emulator's control endpoints.

    Args:
        base_url: the emulator's ``https://host:port`` (or ``http://``).
        timeout: seconds per request.
    """

    def __init__(self, base_url: str, *, timeout: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

    def close(self) -> None:
        """Close the HTTP session."""
        self._session.close()

    def _call(self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None) -> Any:
        url = f"{self.base_url}/_sandbox/{path}"
        try:
            resp = self._session.request(method, url, json=body, params=params, timeout=self.timeout, verify=False)
        except requests.RequestException as exc:
            raise ArvadosAPIError(0, method, f"/_sandbox/{path}", str(exc)[:256]) from exc
        if resp.status_code != 200:
            try:
                message = "; ".join(resp.json().get("errors", []))
            except ValueError:
                message = resp.text[:256]
            raise ArvadosAPIError(resp.status_code, method, f"/_sandbox/{path}", message)
        return resp.json()

    def create_container(self, **fields: Any) -> dict[str, Any]:
        """Create a container (state Queued, priority 1 unless given) and return it as the API shows it."""
        return dict(self._call("POST", "containers", fields))

    def set_priority(self, uuid: str, priority: int) -> dict[str, Any]:
        """Set a container's priority, as a user changing its request would; return the container."""
        return dict(self._call("POST", f"containers/{uuid}/priority", {"priority": priority}))

    def faults(self, **spec: Any) -> dict[str, Any]:
        """Add a fault rule (``mode`` status/hang/drop/drop_after, ``count``, ``fraction``...); return it."""
        return dict(self._call("POST", "faults", spec))

    def clear_faults(self) -> None:
        """Remove every fault rule."""
        self._call("DELETE", "faults")

    def stats(self) -> dict[str, int]:
        """Return request counters keyed ``"<METHOD> <endpoint pattern>"``."""
        return dict(self._call("GET", "stats"))

    def reset_stats(self) -> None:
        """Zero the request counters."""
        self._call("POST", "stats/reset", {})

    def new_token(self, *, admin: bool = True) -> dict[str, Any]:
        """Create another token; return ``{"uuid", "api_token", "owner_uuid", "admin"}``."""
        return dict(self._call("POST", "tokens", {"admin": admin}))

    def logs(self, uuid: str | None = None) -> list[dict[str, Any]]:
        """Return the stored log records (of one object when ``uuid`` is given), oldest first."""
        params = {"object_uuid": uuid} if uuid else None
        return list(self._call("GET", "logs", params=params)["items"])
