"""The discovery document: served without a token, and consistent with the emulator's routes.

Every method the document describes must resolve to an emulator route (``route_of``) with the
same HTTP method, every route must be described, and every ``$ref`` must name a schema in the
document. No SDK needed; ``test_emulator_python_sdk.py`` drives the document with the real one.
"""

from __future__ import annotations

from typing import Any

import pytest

from slurm_dispatch.sandbox.api import EmulatorServer
from slurm_dispatch.sandbox.api.discovery import DISCOVERY_PATH, SERVICE_PATH, discovery_document
from slurm_dispatch.sandbox.api.endpoints import ROUTES, route_of
from slurm_dispatch.sandbox.control import SandboxControl

SAMPLE_UUID = "zzzzz-dz642-0123456789abcde"

DOC = discovery_document("https://sandbox.example:8443", cluster_id="zzzzz")


def _methods(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(resource, name, method)
            for resource, body in doc["resources"].items()
            for name, method in body["methods"].items()]


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_served_without_a_token(emulator: EmulatorServer, arv: Any) -> None:
    resp = arv.get(DISCOVERY_PATH, token="")
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"] == "application/json"
    doc = resp.json()
    assert doc["kind"] == "discovery#restDescription"
    assert (doc["name"], doc["version"], doc["id"]) == ("arvados", "v1", "arvados:v1")
    assert doc["rootUrl"] == emulator.base_url + "/"
    assert doc["servicePath"] == SERVICE_PATH == "arvados/v1/"
    assert doc["uuidPrefix"] == emulator.cluster_id
    # The API itself still wants a token.
    assert arv.get("/arvados/v1/containers", token="").status_code == 401


def test_root_url_follows_the_host_header(emulator: EmulatorServer, arv: Any) -> None:
    as_localhost = arv.get(DISCOVERY_PATH, token="", headers={"Host": f"localhost:{emulator.port}"})
    assert as_localhost.json()["rootUrl"] == f"https://localhost:{emulator.port}/"
    odd = arv.get(DISCOVERY_PATH, token="", headers={"Host": "evil/path?x"})
    assert odd.json()["rootUrl"] == emulator.base_url + "/"


def test_counted_but_never_faulted(emulator: EmulatorServer, emulator_control: SandboxControl,
                                   arv: Any) -> None:
    emulator_control.faults(mode="status", status=503, count=1)
    assert arv.get(DISCOVERY_PATH, token="").status_code == 200
    # The rule is still live for the next API request.
    assert arv.get("/arvados/v1/containers").status_code == 503
    assert emulator.stats()[f"GET {DISCOVERY_PATH}"] == 1


def test_method_names_are_arvados_names() -> None:
    names = {(resource, name) for resource, name, _ in _methods(DOC)}
    assert names == {
        ("containers", n) for n in ("list", "get", "update", "lock", "unlock", "auth", "current", "secret_mounts")
    } | {("logs", n) for n in ("create", "list", "get")} | {("api_client_authorizations", "current")}
    for resource, name, method in _methods(DOC):
        assert method["id"] == f"arvados.{resource}.{name}"


@pytest.mark.parametrize(("resource", "name", "method"),
                         [pytest.param(*m, id=f"{m[0]}.{m[1]}") for m in _methods(DOC)])
def test_every_method_resolves_to_a_route(resource: str, name: str, method: dict[str, Any]) -> None:
    params = method["parameters"]
    path_params = {k for k, p in params.items() if p["location"] == "path"}
    assert path_params == ({"uuid"} if "{uuid}" in method["path"] else set())
    assert all(p["location"] in ("path", "query") for p in params.values())
    assert all(params[k]["required"] for k in path_params)
    path = "/" + SERVICE_PATH + method["path"].replace("{uuid}", SAMPLE_UUID)
    found = route_of(method["httpMethod"], path)
    assert found is not None, f"{method['httpMethod']} {path} is not an emulator route"
    assert found[0] == f"{method['httpMethod']} /{SERVICE_PATH}{method['path']}"
    if method["httpMethod"] in ("POST", "PUT") and name in ("create", "update"):
        assert list(method["request"]["properties"]) == [resource.removesuffix("s")]


def test_every_route_is_described() -> None:
    described = {f"{m['httpMethod']} /{SERVICE_PATH}{m['path']}" for _, _, m in _methods(DOC)}
    routes = {f"{method} {pattern}" for method, _, pattern in ROUTES}
    assert routes == described


def test_every_ref_names_a_schema() -> None:
    refs = set(_refs(DOC["resources"])) | set(_refs(DOC["schemas"]))
    assert refs <= set(DOC["schemas"]), refs - set(DOC["schemas"])
    for _, name, method in _methods(DOC):
        if name == "list":
            listed = DOC["schemas"][method["response"]["$ref"]]
            assert "items_available" in listed["properties"]


def test_root_url_gets_one_trailing_slash() -> None:
    assert discovery_document("http://h:1", cluster_id="abcde")["rootUrl"] == "http://h:1/"
    assert discovery_document("http://h:1/", cluster_id="abcde")["rootUrl"] == "http://h:1/"


def test_list_path_from_the_document_answers(emulator: EmulatorServer, emulator_control: SandboxControl,
                                             arv: Any) -> None:
    ctr = emulator_control.create_container(priority=4)
    doc = arv.get(DISCOVERY_PATH, token="").json()
    method = doc["resources"]["containers"]["methods"]["list"]
    url = doc["rootUrl"] + doc["servicePath"] + method["path"]
    resp = arv.session.get(url, headers={"Authorization": f"Bearer {emulator.root_token}"},
                           params={"alt": "json"}, verify=False, timeout=30)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["kind"] == doc["schemas"][method["response"]["$ref"]]["properties"]["kind"]["default"]
    assert [item["uuid"] for item in body["items"]] == [ctr["uuid"]]
