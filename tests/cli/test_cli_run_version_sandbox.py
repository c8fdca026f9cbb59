"""``version``, ``--version``, ``run``'s refusals, and the ``sandbox`` demo, through CliRunner."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from slurm_dispatch import __version__
from slurm_dispatch.cli.run import database_driver_problem, internal_url_problem
from slurm_dispatch.settings import Settings


def test_version_command_and_option(cli: Any) -> None:
    for args in (["version"], ["--version"]):
        result = cli(*args)
        assert result.exit_code == 0, result.output
        assert result.stdout == f"slurm-dispatch {__version__}\n"


def test_run_refuses_a_missing_config_naming_it(cli: Any, tmp_path: Path) -> None:
    missing = tmp_path / "nope.yml"
    result = cli("run", "--config", str(missing))
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert str(missing) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_run_refuses_a_template_without_job_name(cli: Any) -> None:
    cli.write_config(cli.cluster(SLURM={"SbatchArgumentsList": ["--mem=%M", "--cpus-per-task=%C"]}))
    result = cli("run", "--lock-file", str(cli.config_path.with_name("lock")))
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert any("--job-name=%U" in line and "SbatchArgumentsList" in line for line in lines), result.stderr
    assert lines[-1] == "slurm-dispatch: refusing to start; fix the config (slurm-dispatch config check)"
    assert cli.root_token not in result.output


def test_run_refuses_an_unknown_substitution(cli: Any) -> None:
    cli.write_config(cli.cluster(SLURM={"SbatchArgumentsList": ["--job-name=%U", "--comment=%X"]}))
    result = cli("run", "--lock-file", str(cli.config_path.with_name("lock")))
    assert result.exit_code == 2, result.output
    assert "%X" in result.stderr


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "0.05", "86401"])
def test_sandbox_demo_refuses_a_poll_interval_the_service_would(cli: Any, tmp_path: Path, value: str) -> None:
    """Checked before anything starts (no bash on PATH: a demo that went on would fail another way)."""
    result = cli("sandbox", "--cluster-dir", str(tmp_path / "cluster"), "--poll-interval", value,
                 env={"PATH": str(tmp_path / "nothing-here")})
    assert result.exit_code == 2, result.output
    assert (result.stdout, result.stderr) == ("", (
        f"error: Invalid value for '--poll-interval': must be a number of seconds from 0.1 (a shorter poll only "
        f"spins the CPU) to 86400, not {float(value)} (see 'slurm-dispatch sandbox --help')\n"))
    assert not (tmp_path / "cluster").exists()


@pytest.mark.slurm
def test_sandbox_demo_runs_every_sample_to_a_final_state(cli: Any, slurm_cluster: Any) -> None:
    result = cli("sandbox", "--cluster-dir", str(slurm_cluster.conf_dir), "--poll-interval", "0.5")
    assert result.exit_code == 0, result.output
    out = result.stdout
    table = out[out.index("\ncontainer ") + 1 :].splitlines()
    assert re.fullmatch(r"container +what +prio +state +exit +job +node +ran +note", table[0]), table[0]
    rows = {line[29:61].strip(): line for line in table[2:]}
    expected = {
        "small, urgent": ("Complete", "0"),
        "large memory": ("Complete", "0"),
        "two cores": ("Complete", "0"),
        "command fails (exit 1)": ("Complete", "1"),
        "crunch-run dies while Running": ("Cancelled", "-"),
        "asks for 64 GB: no node has it": ("Cancelled", "-"),
        "low priority": ("Complete", "0"),
    }
    assert set(rows) == set(expected), table
    for label, (state, exit_code) in expected.items():
        words = rows[label][61:].split()
        assert words[1:3] == [state, exit_code], rows[label]
    assert "sbatch refused the job" in rows["asks for 64 GB: no node has it"]
    assert "Queued → Locked" in out and "Running → Complete" in out
    work = re.search(r"\(state in (/\S+)/arvados\.sqlite\)", out)
    assert work, out
    assert not Path(work.group(1)).exists(), "the demo's temporary directory is removed at the end"
    assert "kept the demo's files" not in out


# --- what only the service's host can tell: refused before serving, with exit 2 -------------------------------
# These run ``python -m slurm_dispatch run`` in a child process: it configures logging for the whole process,
# and the fake psycopg below must shadow the real one there only.

REFUSING = "slurm-dispatch: refusing to start; fix the config (slurm-dispatch config check)"


def _foreign_address() -> str:
    """Returns a documentation address (RFC 5737) that this host does not have: binding it fails (EADDRNOTAVAIL).

    Some test machines do use a TEST-NET address of their own, so each candidate is tried.
    """
    for candidate in ("203.0.113.77", "198.51.100.77", "192.0.2.77", "192.0.2.1"):
        with socket.socket() as sock:
            try:
                sock.bind((candidate, 0))
            except OSError:
                return candidate
    raise AssertionError("every RFC 5737 candidate address is this host's: add another candidate")


FOREIGN = _foreign_address()
NOT_HERE = f"http://{FOREIGN}:9006"


def run_service(tmp_path: Path, cluster: dict[str, Any], *, env: dict[str, str] | None = None,
                own_file: str = "") -> subprocess.CompletedProcess[str]:
    """Runs ``slurm-dispatch run`` on ``cluster`` in a child process; blocks until it exits (at most 60 s)."""
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({"Clusters": {"zzzzz": cluster}}), encoding="utf-8")
    own = tmp_path / "slurm-dispatch.yml"
    own.write_text(own_file, encoding="utf-8")
    argv = [sys.executable, "-m", "slurm_dispatch", "run", "--config", str(config), "--skip-legacy",
            "--dispatch-config", str(own), "--lock-file", str(tmp_path / "lock")]
    environ = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", **(env or {})}
    return subprocess.run(argv, env=environ, capture_output=True, text=True, timeout=60, check=False)


def test_run_refuses_internal_urls_of_another_host_after_logging_the_config_warnings(cli: Any,
                                                                                    tmp_path: Path) -> None:
    cluster = cli.cluster()
    cluster["Services"]["DispatchSLURM"]["InternalURLs"] = {NOT_HERE: {}}
    done = run_service(tmp_path, cluster, env={"ARVADOS_API_HOST": "elsewhere.example"}, own_file="Bogus: 1\n")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-2:] == [
        ("slurm-dispatch: Clusters.zzzzz.Services.DispatchSLURM.InternalURLs: configuration does not enable the "
         f"\"crunch-dispatch-slurm\" service on this host: none of {NOT_HERE} is an address of this host (add "
         "this host's URL, or set ListenURL)"),
        REFUSING,
    ]
    logged = [json.loads(line) for line in lines[:-2]]
    assert [(r["level"], r["msg"]) for r in logged] == [
        ("warning", f"config: {tmp_path / 'slurm-dispatch.yml'}: unknown config entry: Bogus"),
        ("warning", "config: ARVADOS_API_HOST environment variable is present, but will not be used"),
    ]
    assert cli.root_token not in done.stderr + done.stdout


def test_run_names_the_variable_when_arvados_service_internal_url_picked_another_host_s_address(
        cli: Any, tmp_path: Path) -> None:
    """The variable chose the one address to listen on: the InternalURLs advice alone would not help."""
    cluster = cli.cluster()
    cluster["Services"]["DispatchSLURM"]["InternalURLs"] = {"http://127.0.0.1:0": {}, NOT_HERE: {}}
    done = run_service(tmp_path, cluster, env={"ARVADOS_SERVICE_INTERNAL_URL": NOT_HERE})
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-2:] == [
        (f"slurm-dispatch: ARVADOS_SERVICE_INTERNAL_URL is '{NOT_HERE}', so the service would listen on {NOT_HERE}, "
         "which is not an address of this host (set ARVADOS_SERVICE_INTERNAL_URL to this host's Clusters.zzzzz."
         "Services.DispatchSLURM.InternalURLs entry, fix that entry's ListenURL, or unset the variable)"),
        REFUSING,
    ]


def test_the_internal_url_problem_names_the_variable_only_when_it_is_set() -> None:
    other = f"http://{FOREIGN}:9007/"
    settings = Settings(dispatch_internal_urls=(other,))
    for environ in (None, {}, {"ARVADOS_SERVICE_INTERNAL_URL": ""}):
        problem = internal_url_problem(settings, environ)
        assert problem is not None and problem.startswith("Clusters.zzzzz.Services.DispatchSLURM.InternalURLs: "), \
            problem
        assert "ARVADOS_SERVICE_INTERNAL_URL" not in problem
    # a URL that names no entry is listened on anyway (Go's warning): it is the variable that must change
    problem = internal_url_problem(settings, {"ARVADOS_SERVICE_INTERNAL_URL": other})
    assert problem is not None and problem.startswith(f"ARVADOS_SERVICE_INTERNAL_URL is '{other}', so the service "
                                                      f"would listen on {other}, which is not an address"), problem


def test_run_refuses_a_postgresql_lock_without_psycopg(cli: Any, tmp_path: Path) -> None:
    fake = tmp_path / "fake" / "psycopg"
    fake.mkdir(parents=True)
    # What psycopg itself raises when it finds no libpq.
    (fake / "__init__.py").write_text('raise ImportError("no pq wrapper available.\\nAttempts made:\\n- ...")\n')
    cluster = cli.cluster()
    cluster["Services"]["DispatchSLURM"]["InternalURLs"] = {"http://127.0.0.1:0": {}}
    cluster["PostgreSQL"] = {"Connection": {"host": "db.example", "password": "dbsecretpassword"}}
    done = run_service(tmp_path, cluster, env={"PYTHONPATH": str(fake.parent)})
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-2:] == [
        ("slurm-dispatch: Clusters.zzzzz.PostgreSQL.Connection is set, but psycopg cannot be imported (no pq wrapper "
         "available.): install the postgres extra (pip install 'slurm-dispatch[postgres]'), or remove "
         "PostgreSQL.Connection to run without the dispatch lock"),
        REFUSING,
    ]
    assert "dbsecretpassword" not in done.stderr + done.stdout


def test_an_internal_url_of_this_host_is_no_problem_even_when_in_use() -> None:
    """In use means another instance (or a lingering socket) on this host: serve waits for the lock instead."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for urls in ((f"http://127.0.0.1:{port}",), ("http://127.0.0.1:0",), (NOT_HERE, f"http://127.0.0.1:{port}")):
            assert internal_url_problem(Settings(dispatch_internal_urls=urls)) is None, urls
    problem = internal_url_problem(Settings(dispatch_internal_urls=(NOT_HERE, f"http://{FOREIGN}:9007/")))
    assert problem is not None and f"none of {NOT_HERE}, http://{FOREIGN}:9007/ is an address" in problem


def test_psycopg_is_needed_only_with_a_postgresql_connection() -> None:
    assert database_driver_problem(Settings()) is None
    assert database_driver_problem(Settings(postgresql_connection={"host": "db"})) is None  # installed here
