"""The subset of the Arvados API client that the dispatch core calls.

``slurm_dispatch.arvados.client.ArvadosClient`` implements it over HTTP; tests use an
in-memory fake. Every method blocks (network I/O); the dispatcher runs them in its
bounded executor, never on the event loop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol

from slurm_dispatch.model import Container, ContainerState, Filter


class ListPageLike(Protocol):
    """One page of a list call (``ListPage`` in the client)."""

    @property
    def items(self) -> Sequence[Mapping[str, Any]]:
        """The raw records of this page."""
        ...

    @property
    def items_available(self) -> int | None:
        """The total number of matches (None when ``count="none"``)."""
        ...


class DispatchClient(Protocol):
    """What the dispatcher needs of the Arvados API. Every method blocks on network I/O.

    Errors are those of ``slurm_dispatch.errors``: ``ArvadosConflict`` (422),
    ``ArvadosUnavailable`` (transient), ``ArvadosAuthError`` (fatal),
    ``ArvadosNotFound``, ``ArvadosPermissionDenied``.
    """

    def current_token_uuid(self) -> str:
        """Return the uuid of this client's token (``GET api_client_authorizations/current``)."""
        ...

    def list(
        self,
        *,
        filters: Sequence[Filter],
        order: Sequence[str],
        limit: int,
        offset: int,
        count: Literal["exact", "none"],
        select: Sequence[str] | None = None,
    ) -> ListPageLike:
        """Return one page of ``GET containers``; with ``select``, each record holds only those fields."""
        ...

    def get(self, uuid: str) -> Container:
        """Return one container (``GET containers/<uuid>``)."""
        ...

    def lock(self, uuid: str) -> Mapping[str, Any]:
        """Lock a Queued container (``POST containers/<uuid>/lock``)."""
        ...

    def unlock(self, uuid: str) -> Mapping[str, Any]:
        """Unlock a Locked container (``POST containers/<uuid>/unlock``)."""
        ...

    def update_state(self, uuid: str, state: ContainerState) -> Any:
        """Set a container's state (``PUT containers/<uuid>``)."""
        ...

    def update(self, uuid: str, fields: Mapping[str, Any]) -> Any:
        """Change fields of a container (``PUT containers/<uuid>``), e.g. state and runtime_status together."""
        ...

    def create_log(self, *, object_uuid: str, event_type: str, text: str) -> Any:
        """Create a log record on an object (``POST logs``)."""
        ...
