"""``run`` and ``config check`` agree on ARVADOS_SERVICE_INTERNAL_URL: the same line and exit 2 for a malformed
value, the chosen entry in the effective settings, Go's warning for a URL that names no entry.

The rules themselves: tests/service/test_service_internal_url.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

EXIT_CONFIG = 2


@pytest.mark.parametrize("value", [
    pytest.param("localhost:9006", id="no scheme"),
    pytest.param("http://127.0.0.1:9006/\tx", id="tab"),
    pytest.param("http://127.0.0.1:70000/", id="port out of range"),
    pytest.param("https://127.0.0.1:9007/", id="https, no entry"),
])
def test_a_malformed_value_is_the_same_one_line_refusal_from_check_and_run(cli: Any, value: str) -> None:
    env = {"ARVADOS_SERVICE_INTERNAL_URL": value}
    checked = cli("config", "check", "--skip-legacy", env=env)
    ran = cli("run", "--skip-legacy", "--lock-file", str(cli.config_path.with_name("lock")), env=env)
    assert checked.exit_code == EXIT_CONFIG, checked.output
    assert ran.exit_code == EXIT_CONFIG, ran.output
    assert checked.stderr.startswith("error: ARVADOS_SERVICE_INTERNAL_URL: "), checked.stderr
    assert checked.stderr.count("\n") == 1, checked.stderr
    assert ran.stderr == "slurm-dispatch: " + checked.stderr.removeprefix("error: ")
    assert checked.stdout == ran.stdout == ""


def test_check_shows_the_chosen_entry_and_go_s_warning(cli: Any) -> None:
    body = cli.cluster()
    body["Services"]["DispatchSLURM"]["InternalURLs"] = {
        "http://127.0.0.1:9006": {}, "http://dispatch.example:9006/": {"ListenURL": "http://127.0.0.1:9106/"}}
    cli.write_config(body)
    picked = cli("config", "check", "--json", "--skip-legacy",
                 env={"ARVADOS_SERVICE_INTERNAL_URL": "http://dispatch.example:9006"})
    assert picked.exit_code == 0, picked.output
    data = json.loads(picked.stdout)
    assert data["settings"]["dispatch_internal_urls"] == ["http://127.0.0.1:9106/"]
    assert not [w for w in data["warnings"] if "InternalURLs" in w]

    other = cli("config", "check", "--json", "--skip-legacy",
                env={"ARVADOS_SERVICE_INTERNAL_URL": "http://127.0.0.1:9200"})
    assert other.exit_code == 0, other.output
    data = json.loads(other.stdout)
    assert data["settings"]["dispatch_internal_urls"] == ["http://127.0.0.1:9200"]
    assert ("possible configuration error: listening on http://127.0.0.1:9200/ (from $ARVADOS_SERVICE_INTERNAL_URL) "
            "even though configuration does not have a matching InternalURLs entry") in data["warnings"]
