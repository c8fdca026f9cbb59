"""The Grafana dashboard and the alerting rules, against a real Prometheus scraping a real ``slurm-dispatch run``.

contrib/grafana/slurm-dispatch.json and contrib/prometheus/slurm-dispatch.rules.yml are only worth something if
their PromQL works on what the service really exports. So: the service runs (``slurm-dispatch run`` in a
subprocess, the emulated Arvados API, the real Slurm test cluster) and dispatches a few containers, one lock
answered 503 on the way (so the API error and overload series exist); a real ``prometheus`` scrapes its /metrics
every second with the ManagementToken and evaluates the rules; then every expression of the dashboard is asked of
Prometheus's HTTP API and must answer a non-empty vector of finite numbers. ``promtool`` checks the rules file and
runs its unit tests.

Prometheus and promtool come from Debian's ``prometheus`` package (contrib/setup.sh installs it). Without them
these tests skip, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from plugins.e2e import crunch_run_stub
from plugins.slurm_cluster import in_ci
from plugins.waiting import wait_until

from slurm_dispatch.arvados.client import ArvadosClient
from slurm_dispatch.model import ContainerState

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "contrib" / "grafana" / "slurm-dispatch.json"
RULES = REPO / "contrib" / "prometheus" / "slurm-dispatch.rules.yml"
RULES_TEST = REPO / "contrib" / "prometheus" / "slurm-dispatch.rules.test.yml"

MANAGEMENT_TOKEN = "management-token-for-prometheus-0123456789"
JOB = "slurm-dispatch"
"""The scrape job's name: the one the alerting rules select."""
RATE_INTERVAL = "5m"
"""What ``$__rate_interval`` becomes: longer than the whole test, so every rate() sees every sample."""
CONTAINERS = 3


def _program(name: str) -> str:
    """The path of ``name``; skip without it (fail under CI=true, where contrib/setup.sh installed it)."""
    path = shutil.which(name)
    if path is None:
        reason = f"{name} is not installed (Debian package prometheus; contrib/setup.sh installs it)"
        if in_ci():
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_promtool_accepts_the_rules() -> None:
    result = subprocess.run([_program("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 8 rules found" in result.stdout


def test_the_rules_unit_tests_pass() -> None:
    result = subprocess.run([_program("promtool"), "test", "rules", RULES_TEST.name], cwd=RULES_TEST.parent,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


# -- the dashboard against a real Prometheus and a real service ---------------------------------------------------


def dashboard_exprs(node: Any) -> list[str]:
    """Every ``expr`` in the dashboard (panel targets, rows' nested panels included), in document order."""
    found: list[str] = []
    if isinstance(node, dict):
        if isinstance(node.get("expr"), str):
            found.append(node["expr"])
        for value in node.values():
            found += dashboard_exprs(value)
    elif isinstance(node, list):
        for value in node:
            found += dashboard_exprs(value)
    return found


def substitute(expr: str, variables: dict[str, str]) -> str:
    """``expr`` with Grafana's ``$name`` and ``${name}`` replaced; fails the test on a variable it does not know."""
    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in variables:
            pytest.fail(f"unknown dashboard variable ${name} in {expr}")
        return variables[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", one, expr)


class Prometheus:
    """A ``prometheus`` process on a free loopback port, with its storage in a temporary directory."""

    def __init__(self, binary: str, directory: Path, *, target: str, token_file: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [{
                "job_name": JOB,
                "authorization": {"credentials_file": str(token_file)},
                "static_configs": [{"targets": [target]}],
            }],
        }
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = directory / "prometheus.log"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [binary, f"--config.file={directory / 'prometheus.yml'}", f"--storage.tsdb.path={directory / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=log, stderr=subprocess.STDOUT,
            )

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"prometheus exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
        try:
            return requests.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    def api(self, path: str, **params: Any) -> Any:
        """The ``data`` of a successful API answer; fails the test (with Prometheus's error) otherwise."""
        answer = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = answer.json()
        if body.get("status") != "success":
            pytest.fail(f"{path} {params}: {answer.status_code} {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def vector(self, query: str) -> list[dict[str, Any]]:
        """The instant vector ``query`` returns now."""
        data = self.api("query", query=query)
        assert data["resultType"] == "vector", f"{query}: a {data['resultType']}, not a vector"
        return list(data["result"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def processes() -> Iterator[list[Any]]:
    """What the test started (subprocess.Popen or Prometheus), stopped afterwards, last first."""
    started: list[Any] = []
    yield started
    for p in reversed(started):
        if isinstance(p, Prometheus):
            p.stop()
        elif p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)


def _start_service(tmp_path: Path, *, emulator: Any, slurm_env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    """``slurm-dispatch run`` with a config of its own (PollInterval 0.5 s, metrics on ``port``)."""
    out = tmp_path / "slurm-out"
    out.mkdir()
    cluster = {
        "SystemRootToken": emulator.root_token,
        "ManagementToken": MANAGEMENT_TOKEN,
        "Services": {"Controller": {"ExternalURL": emulator.base_url},
                     "DispatchSLURM": {"InternalURLs": {f"http://127.0.0.1:{port}": {}}}},
        "TLS": {"Insecure": True},
        "SystemLogs": {"Format": "text", "LogLevel": "info"},
        "Containers": {
            "CloudVMs": {"PollInterval": "500ms"},
            "ReserveExtraRAM": "50MiB",
            "CrunchRunCommand": crunch_run_stub(),
            "SLURM": {"SbatchArgumentsList": ["--job-name=%U", "--mem=%M", "--cpus-per-task=%C", "--tmp=%T",
                                              "--partition=%P", f"--output={out}/%%j.out"]},
        },
    }
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({"Clusters": {"zzzzz": cluster}}))
    config.chmod(0o600)
    own = tmp_path / "slurm-dispatch.yml"
    own.write_text(yaml.safe_dump({"Service": {"StateDirectory": str(tmp_path / "state")}}))
    env = {**os.environ, **slurm_env}
    for name in ("ARVADOS_API_TOKEN", "NOTIFY_SOCKET", "SLURM_DISPATCH_CONFIG"):
        env.pop(name, None)
    with (tmp_path / "service.log").open("w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "slurm_dispatch", "run", "--config", str(config), "--skip-legacy",
             "--dispatch-config", str(own), "--lock-file", str(tmp_path / "lock")],
            env=env, stdout=subprocess.DEVNULL, stderr=log,
        )


@pytest.mark.slurm
def test_every_dashboard_query_answers_from_a_real_dispatcher(
    emulator: Any, emulator_control: Any, slurm_clean: Any, tmp_path: Path, processes: list[Any]
) -> None:
    binary = _program("prometheus")
    exprs = dashboard_exprs(json.loads(DASHBOARD.read_text(encoding="utf-8")))
    assert len(exprs) >= 25, "the dashboard's queries were not found"

    # The first lock is answered "too busy": api_errors_total{kind="unavailable"} and the overload series appear.
    emulator_control.faults(mode="status", status=503, count=1, method="POST", path_prefix="/arvados/v1/containers/")
    port = _free_port()
    service = _start_service(tmp_path, emulator=emulator, slurm_env=slurm_clean.env, port=port)
    processes.append(service)
    service_log = tmp_path / "service.log"
    token = tmp_path / "management-token"
    token.touch(mode=0o600)
    token.write_text(MANAGEMENT_TOKEN)
    prometheus = Prometheus(binary, tmp_path, target=f"127.0.0.1:{port}", token_file=token)
    processes.append(prometheus)
    wait_until(prometheus.ready, timeout=30, what="prometheus to be ready")
    selector = f'{{job="{JOB}"}}'
    # A scrape before the first container: rate() and increase() then see every submission as an increase.
    wait_until(lambda: prometheus.vector(f"up{selector} == 1"), timeout=30,
               what=f"Prometheus's first successful scrape (logs: {service_log}, {prometheus.log})")

    uuids = [emulator_control.create_container(
        priority=5, command=["sleep", "0.5"], runtime_constraints={"ram": 100_000_000, "vcpus": 1},
    )["uuid"] for _ in range(CONTAINERS)]
    api = ArvadosClient(api_host=emulator.base_url, token=emulator.root_token, insecure=True)
    wait_until(lambda: all(api.get(u).state is ContainerState.COMPLETE for u in uuids), timeout=90,
               what=f"the containers to complete (service log: {service_log})")
    wait_until(lambda: prometheus.vector(f"arvados_dispatchslurm_sbatch_submits_total{selector} >= {CONTAINERS}"),
               timeout=30, what="Prometheus to have scraped the submissions")
    wait_until(lambda: prometheus.vector(f"arvados_dispatchslurm_api_overloads_total{selector} >= 1"),
               timeout=30, what="Prometheus to have scraped the overload")
    # rate() needs two samples of a series: two more scrapes after the one that showed the last series to appear (a
    # scrape can come late on a busy machine, and then the overload's series had one sample only)
    scrapes = f"count_over_time(up{selector}[10m])"
    seen = float(prometheus.vector(scrapes)[0]["value"][1])
    wait_until(lambda: float(prometheus.vector(scrapes)[0]["value"][1]) >= seen + 2, timeout=30,
               what="two more scrapes")
    up = prometheus.vector(f"up{selector}")
    assert [s["value"][1] for s in up] == ["1"], f"the scrape fails: {up}"
    dispatching = prometheus.vector(f"arvados_dispatchslurm_dispatching{selector}")
    assert [s["value"][1] for s in dispatching] == ["1"], f"the one instance must say it dispatches: {dispatching}"

    instance = f"127.0.0.1:{port}"
    for variables in ({"job": JOB, "instance": instance},  # one instance chosen
                      {"job": ".*", "instance": ".*"}):  # "All": the variables' allValue
        variables |= {"__rate_interval": RATE_INTERVAL, "datasource": "unused"}
        for expr in exprs:
            query = substitute(expr, variables)
            result = prometheus.vector(query)
            assert result, f"no data for the dashboard's query {query}"
            for sample in result:
                assert math.isfinite(float(sample["value"][1])), f"{query}: {sample}"

    # The labelled series the panels group by come from what really happened: the 503, sbatch, squeue.
    kinds = {s["metric"]["kind"] for s in prometheus.vector(f"arvados_dispatchslurm_api_errors_total{selector}")}
    assert "unavailable" in kinds
    operations = {(s["metric"]["operation"], s["metric"]["outcome"])
                  for s in prometheus.vector(f"arvados_dispatchslurm_slurm_operations_total{selector}")}
    assert {("submit", "ok"), ("queue", "ok")} <= operations

    # The variables' label_values() queries find this job and this instance.
    templating = json.loads(DASHBOARD.read_text(encoding="utf-8"))["templating"]["list"]
    queries = {v["name"]: v["definition"] for v in templating if v["type"] == "query"}
    assert set(queries) == {"job", "instance"}
    for name, want in (("job", JOB), ("instance", instance)):
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", queries[name])
        assert match and match.group(2) == name, queries[name]
        values = prometheus.api(f"label/{name}/values", **{"match[]": substitute(match.group(1), {"job": JOB})})
        assert want in values

    # The rules loaded, were evaluated on this data without error, and none fires for a healthy dispatcher.
    def evaluated() -> list[dict[str, Any]]:
        rules = [r for g in prometheus.api("rules")["groups"] for r in g["rules"]]
        return rules if rules and all(r["health"] != "unknown" for r in rules) else []

    rules = wait_until(evaluated, timeout=30, what="every rule to be evaluated")
    assert len(rules) == 8
    assert [(r["name"], r["health"], r.get("lastError", "")) for r in rules if r["health"] != "ok"] == []
    assert [r["name"] for r in rules if r["state"] == "firing"] == []
