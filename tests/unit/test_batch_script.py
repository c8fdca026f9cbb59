"""Tests of the job script, crunch-run's argv, GatewayAuthSecret and sbatch's environment.

As in services/crunch-dispatch-slurm/script.go: execScript and crunch-dispatch-slurm.go: Dispatcher.submit,
Dispatcher.configure.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slurm_dispatch.settings import Settings
from slurm_dispatch.slurm.sbatch import (
    batch_script,
    crunch_run_argv,
    gateway_auth_secret,
    sbatch_environment,
    slurm_command_env,
)

GOLDEN = Path(__file__).parent / "golden" / "batch_script.txt"
ROOT_TOKEN = "systemusertesttoken1234567890aoeuidhtnsqjkxbmwvzpy"
UUID = "zzzzz-dz642-queuedcontainer"
SECRET = "eae11360d42186e309837cfc0e9871dba2e33f1803d16be32234811ef5187ba2"


def test_gateway_auth_secret_reference_example() -> None:
    assert gateway_auth_secret(ROOT_TOKEN, UUID) == SECRET


def test_crunch_run_argv() -> None:
    assert crunch_run_argv(UUID, Settings()) == ["crunch-run", "--runtime-engine=docker", UUID]
    s = Settings(
        crunch_run_command="/usr/bin/crunch-run",
        crunch_run_arguments=("--cgroup-parent-subsystem=cpuset", "-v"),
        runtime_engine="singularity",
    )
    assert crunch_run_argv(UUID, s) == [
        "/usr/bin/crunch-run",
        "--cgroup-parent-subsystem=cpuset",
        "-v",
        "--runtime-engine=singularity",
        UUID,
    ]


def test_batch_script_reference_example() -> None:
    script = batch_script(crunch_run_argv(UUID, Settings()), {"GatewayAuthSecret": SECRET})
    assert script == (
        f"#!/bin/sh\nGatewayAuthSecret='{SECRET}' exec 'crunch-run' '--runtime-engine=docker' '{UUID}'\n"
    )


def test_batch_script_golden() -> None:
    """Compare with tests/unit/golden/batch_script.txt (delete that file to re-record it)."""
    s = Settings(
        crunch_run_command="/usr/local/bin/crunch-run",
        crunch_run_arguments=("--cgroup-parent-subsystem=cpuset", '--note=it\'s "quoted" $HOME `x`'),
    )
    script = batch_script(
        crunch_run_argv(UUID, s),
        {"GatewayAuthSecret": gateway_auth_secret(ROOT_TOKEN, UUID), "EXTRA": "a'b\nc"},
    )
    if not GOLDEN.exists():
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(script)
        pytest.skip(f"recorded {GOLDEN}; commit it")
    assert script == GOLDEN.read_text()


def test_batch_script_escapes_single_quotes() -> None:
    assert batch_script(["it's"], {"K": "'"}) == "#!/bin/sh\nK=''\\''' exec 'it'\\''s'\n"


def test_batch_script_empty_env_and_word() -> None:
    assert batch_script(["x", ""], {}) == "#!/bin/sh\nexec 'x' ''\n"


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        pytest.param(["x"], {"1BAD": "v"}, id="env-name-starts-with-digit"),
        pytest.param(["x"], {"A-B": "v"}, id="env-name-with-dash"),
        pytest.param(["x"], {"A B": "v"}, id="env-name-with-space"),
        pytest.param(["x\0"], {}, id="nul-in-word"),
        pytest.param(["x"], {"A": "\0"}, id="nul-in-value"),
    ],
)
def test_batch_script_rejects_what_sh_cannot_hold(argv: list[str], env: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        batch_script(argv, env)


words = st.text(st.characters(codec="utf-8", exclude_characters="\0"), max_size=20)
names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)


@given(argv=st.lists(words, min_size=1, max_size=8), env=st.dictionaries(names, words, max_size=4))
def test_batch_script_round_trips_through_shlex(argv: list[str], env: dict[str, str]) -> None:
    script = batch_script(argv, env)
    shebang, body = script.split("\n", 1)
    assert shebang == "#!/bin/sh"
    assert body.endswith("\n")
    tokens = shlex.split(body)
    assert tokens == [f"{k}={v}" for k, v in env.items()] + ["exec", *argv]


PRINT_ARGS_AND_ENV = (
    "import json, os, sys; "
    "print(json.dumps([sys.argv[1:], {k: os.environ.get(k) for k in ('GatewayAuthSecret', 'TRICKY')}]))"
)


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["plain", "two words", ""], id="spaces-and-empty"),
        pytest.param(["it's", "'", "''", "'\\''"], id="single-quotes"),
        pytest.param(["$HOME", "`id`", "$(id)", "\\n", "*", "a\nb", "é✓"], id="shell-metacharacters"),
    ],
)
def test_batch_script_runs_in_real_sh(args: list[str], tmp_path: Path) -> None:
    """The script, run by /bin/sh, execs exactly the argv with exactly the env values."""
    env = {"GatewayAuthSecret": SECRET, "TRICKY": "a'b $X `y`\nz"}
    script = batch_script([sys.executable, "-c", PRINT_ARGS_AND_ENV, *args], env)
    done = subprocess.run(
        ["/bin/sh"],
        check=False,
        input=script,
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [args, env]


# --- sbatch_environment ----------------------------------------------------------------------


def test_sbatch_environment_adds_api_settings_to_base() -> None:
    s = Settings(
        controller_url="https://ctrl.example.com:8443/",
        system_root_token=ROOT_TOKEN,
        sbatch_environment={"ARVADOS_KEEP_SERVICES": "http://keep0:25107", "PATH": "/opt/bin"},
    )
    env = sbatch_environment(s, {"PATH": "/usr/bin:/bin", "SLURM_CONF": "/etc/slurm/slurm.conf"})
    assert env == {
        "PATH": "/opt/bin",  # SbatchEnvironmentVariables win
        "SLURM_CONF": "/etc/slurm/slurm.conf",
        "ARVADOS_API_HOST": "ctrl.example.com:8443",
        "ARVADOS_API_TOKEN": ROOT_TOKEN,
        "ARVADOS_API_HOST_INSECURE": "",
        "ARVADOS_KEEP_SERVICES": "http://keep0:25107",
    }


def test_sbatch_environment_insecure_and_no_scheme() -> None:
    s = Settings(controller_url="ctrl.example.com", system_root_token="t", tls_insecure=True)
    env = sbatch_environment(s, {})
    assert env["ARVADOS_API_HOST"] == "ctrl.example.com"
    assert env["ARVADOS_API_HOST_INSECURE"] == "1"


def test_sbatch_environment_overrides_inherited_api_values() -> None:
    s = Settings(controller_url="https://new.example/", system_root_token="new")
    env = sbatch_environment(s, {"ARVADOS_API_HOST": "old.example", "ARVADOS_API_TOKEN": "old"})
    assert (env["ARVADOS_API_HOST"], env["ARVADOS_API_TOKEN"]) == ("new.example", "new")


def test_sbatch_environment_without_credentials_adds_nothing() -> None:
    """As in Go: with neither host nor token configured, the job relies on the base environment."""
    s = Settings(sbatch_environment={"IGNORED": "1"})
    base = {"ARVADOS_API_HOST": "from.env", "ARVADOS_API_TOKEN": "tok"}
    env = sbatch_environment(s, base)
    assert env == base
    assert env is not base


def test_sbatch_environment_does_not_touch_its_input() -> None:
    base = {"PATH": "/bin"}
    sbatch_environment(Settings(controller_url="https://h/", system_root_token="t"), base)
    assert base == {"PATH": "/bin"}


def test_slurm_command_env_carries_sbatch_variables_to_every_command() -> None:
    """Go sets SbatchEnvironmentVariables in its own environment: squeue and scancel see a SLURM_CONF there."""
    s = Settings(controller_url="https://ctl.example:443", system_root_token="t" * 20,
                 sbatch_environment={"SLURM_CONF": "/etc/slurm/b.conf"})
    env = slurm_command_env(s, {"PATH": "/usr/bin", "SLURM_CONF": "/etc/slurm/a.conf"})
    assert env == {"PATH": "/usr/bin", "SLURM_CONF": "/etc/slurm/b.conf"}
    assert "ARVADOS_API_TOKEN" not in env, "only sbatch needs the token"
    assert slurm_command_env(Settings(sbatch_environment={"X": "1"}), {"PATH": "/p"}) == {"PATH": "/p"}


def test_job_base_env_passes_arvados_variables_on_but_not_systemds() -> None:
    """Go's jobs inherit its whole environment (ARVADOS_KEEP_SERVICES, ARVADOS_DEBUG, ...); systemd's
    per-process variables and the three API variables (set from the config for sbatch) are dropped."""
    from slurm_dispatch.cli.run import job_base_env

    environ = {"PATH": "/usr/bin", "ARVADOS_KEEP_SERVICES": "http://keep0:25107", "NOTIFY_SOCKET": "/run/x",
               "WATCHDOG_USEC": "1", "ARVADOS_API_TOKEN": "from-the-environment"}
    base = job_base_env(environ)
    assert base == {"PATH": "/usr/bin", "ARVADOS_KEEP_SERVICES": "http://keep0:25107"}, \
        "an inherited token must not reach squeue, scancel, ... (which start from this environment)"
    s = Settings(controller_url="https://ctl.example:443", system_root_token="t" * 20)
    assert sbatch_environment(s, base)["ARVADOS_API_TOKEN"] == "t" * 20, "sbatch gets the config's token"


def test_admin_commands_reach_the_cluster_the_service_uses() -> None:
    """status and adopt build their Slurm backend from the settings too: a SLURM_CONF that only
    SbatchEnvironmentVariables sets must point them where the service's squeue and scancel go."""
    from slurm_dispatch.cli.common import slurm_backend

    s = Settings(controller_url="https://ctl.example:443", system_root_token="t" * 20,
                 sbatch_environment={"SLURM_CONF": "/etc/slurm/b.conf"})
    shell = {"PATH": "/usr/bin", "SLURM_CONF": "/etc/slurm/a.conf", "HOME": "/root"}
    assert slurm_backend(shell, settings=s)._env == {"PATH": "/usr/bin", "SLURM_CONF": "/etc/slurm/b.conf"}
    assert slurm_backend(shell)._env == {"PATH": "/usr/bin", "SLURM_CONF": "/etc/slurm/a.conf"}, \
        "cancel, which reads no config, keeps the shell's"


@pytest.mark.parametrize(("env", "words"), [
    ({"x" * 5000 + "-": "v"}, "is not a valid environment variable name"),
    ({"A" * 5000: "a\0b"}, "contains a NUL character"),
])
def test_a_refusal_shows_a_long_name_cut_short(env: dict[str, str], words: str) -> None:
    """Found by benchmarks/fuzz_records.py: a 5,000-character name made a 5,000-character message."""
    with pytest.raises(ValueError, match=words) as raised:
        batch_script(["crunch-run"], env)
    assert len(str(raised.value)) < 150, str(raised.value)
    assert "..." in str(raised.value)
