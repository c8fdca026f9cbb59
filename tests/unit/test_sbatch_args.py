"""Tests of slurm_dispatch.slurm.sbatch: sbatch argument templating.

Go's is services/crunch-dispatch-slurm/crunch-dispatch-slurm.go: Dispatcher.sbatchArgs.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slurm_dispatch.errors import SbatchTemplateError, UnsatisfiableContainer
from slurm_dispatch.model import Container, MiB
from slurm_dispatch.settings import InstanceType, Settings
from slurm_dispatch.slurm.sbatch import INITIAL_NICE, TEMPLATE_TOKENS, sbatch_args, substitute

UUID = "zzzzz-dz642-queuedcontainer"
PREFIX = ["--nice=10000", "--no-requeue"]
GiB = 1 << 30


def ctr(**over: Any) -> Container:
    """Arvados's `queued` fixture (services/api/test/fixtures/containers.yml) as the controller returns it,
    with overrides."""
    rc: dict[str, Any] = {
        "ram": 12000000000,
        "vcpus": 4,
        "keep_cache_ram": 0,
        "keep_cache_disk": 0,
        "API": False,
        "gpu": {"stack": "", "device_count": 0, "driver_version": "", "hardware_target": None, "vram": 0},
    }
    rc.update(over.pop("rc", {}))
    sp: dict[str, Any] = {"partitions": None, "preemptible": False, "max_run_time": 0, "supervisor": False}
    sp.update(over.pop("sp", {}))
    raw: dict[str, Any] = {
        "kind": "arvados#container",
        "uuid": UUID,
        "state": "Locked",
        "priority": 1,
        "created_at": "2016-01-11T11:11:11.111111000Z",
        "container_image": "test",
        "command": ["echo", "hello"],
        "runtime_constraints": rc,
        "scheduling_parameters": sp,
        "mounts": {
            "/tmp": {"kind": "tmp", "capacity": 24000000000},
            "/var/spool/cwl": {"kind": "tmp", "capacity": 24000000000},
        },
    }
    raw.update(over)
    return Container.from_api(raw)


def test_initial_nice_is_10000() -> None:
    assert INITIAL_NICE == 10000


@pytest.mark.parametrize(
    ("container", "settings", "expected"),
    [
        pytest.param(ctr(), Settings(sbatch_arguments=()), PREFIX, id="no-template-only-the-fixed-two"),
        pytest.param(
            ctr(),
            Settings(),
            PREFIX + [f"--job-name={UUID}", "--mem=11995", "--cpus-per-task=4", "--tmp=45777"],
            id="default-template-queued-fixture",
        ),
        pytest.param(
            ctr(rc={"ram": 250000000, "vcpus": 2}, mounts={}),
            Settings(),
            PREFIX + [f"--job-name={UUID}", "--mem=789", "--cpus-per-task=2", "--tmp=0"],
            id="default-template-250MB-2cpu",
        ),
        pytest.param(
            ctr(rc={"keep_cache_ram": 1 * MiB}),
            Settings(reserve_extra_ram=0),
            PREFIX
            + [f"--job-name={UUID}", "--mem=11446", "--cpus-per-task=4", "--tmp=45777"],  # 11444.09 + 1
            id="keep-cache-ram-in-mem-not-tmp",
        ),
        pytest.param(
            ctr(rc={"keep_cache_disk": 1}),
            Settings(sbatch_arguments=("--tmp=%T",)),
            PREFIX + ["--tmp=45777"],
            id="keep-cache-disk-in-tmp-rounds-up",
        ),
        pytest.param(
            ctr(rc={"ram": MiB, "keep_cache_ram": 0}),
            Settings(reserve_extra_ram=0, sbatch_arguments=("--mem=%M",)),
            PREFIX + ["--mem=1"],
            id="exact-MiB-not-rounded-up",
        ),
        pytest.param(
            ctr(),
            Settings(sbatch_arguments=("--job-name=%U", "-c", "%C", "--comment=100%%", "--x=50%", "%%P")),
            PREFIX + [f"--job-name={UUID}", "-c", "4", "--comment=100%", "--x=50%", "%P"],
            id="custom-template-percent-escapes",
        ),
        pytest.param(
            ctr(rc={"gpu": {"stack": "cuda", "device_count": 2}}),
            Settings(sbatch_arguments=("--job-name=%U",)),
            PREFIX + [f"--job-name={UUID}", "--gpus=2"],
            id="gpu-appends-gpu-template",
        ),
        pytest.param(
            ctr(rc={"gpu": {"stack": "cuda", "device_count": 1}}),
            Settings(sbatch_arguments=("-G%G",), sbatch_gpu_arguments=("--gres=gpu:%G", "--constraint=cuda")),
            PREFIX + ["-G1", "--gres=gpu:1", "--constraint=cuda"],
            id="gpu-custom-template",
        ),
        pytest.param(
            ctr(rc={"cuda": {"device_count": 1}}),
            Settings(sbatch_arguments=("-G%G",)),
            PREFIX + ["-G0"],
            id="deprecated-cuda-ignored",
        ),
        pytest.param(
            ctr(sp={"partitions": ["fast", "slow"]}),
            Settings(sbatch_arguments=("--partition=%P",)),
            PREFIX + ["--partition=fast,slow"],
            id="partitions-joined",
        ),
        pytest.param(
            ctr(sp={"partitions": []}),
            Settings(sbatch_arguments=("--partition=%P", "-p%P,extra", "--keep")),
            PREFIX + ["--keep"],
            id="empty-partitions-drops-argument",
        ),
        pytest.param(
            ctr(sp={"max_run_time": 3601}),
            Settings(sbatch_arguments=("--time=%W",), max_run_time_overhead=0, time_limit_signal=0),
            PREFIX + ["--time=61"],
            id="max-run-time-minutes-rounded-up-as-go",
        ),
        pytest.param(
            ctr(sp={"max_run_time": 60}),
            Settings(sbatch_arguments=("--time=%W",), max_run_time_overhead=0, time_limit_signal=0),
            PREFIX + ["--time=1"],
            id="max-run-time-exact-minute-as-go",
        ),
        pytest.param(
            ctr(sp={"max_run_time": 3601}),
            Settings(sbatch_arguments=("--time=%W",)),
            PREFIX + ["--time=66", "--signal=B:TERM@120"],
            id="max-run-time-with-the-default-overhead-and-stop-signal",
        ),
        pytest.param(
            ctr(sp={"max_run_time": 0}),
            Settings(sbatch_arguments=("--time=%W",), default_max_run_time=7200, max_run_time_overhead=60,
                     time_limit_signal=30),
            PREFIX + ["--time=121", "--signal=B:TERM@30"],
            id="default-max-run-time-for-containers-without-one",
        ),
        pytest.param(
            ctr(sp={"max_run_time": 600}),
            Settings(sbatch_arguments=("--time=%W", "--signal=USR1@60")),
            PREFIX + ["--time=15", "--signal=USR1@60"],
            id="a-site-signal-is-kept-and-not-doubled",
        ),
        pytest.param(
            ctr(sp={"max_run_time": 600}),
            Settings(sbatch_arguments=("--mem=%M",)),
            PREFIX + ["--mem=11995"],
            id="no-time-argument-no-signal",
        ),
        pytest.param(
            ctr(sp={"max_run_time": 600}),
            Settings(sbatch_arguments=("--time=%W", "--sig=B:USR1@60")),
            PREFIX + ["--time=15", "--sig=B:USR1@60"],
            id="a-site-signal-written-as-a-prefix-is-kept-and-not-replaced",
        ),
        pytest.param(
            ctr(sp={"max_run_time": 600}),
            Settings(sbatch_arguments=("-t", "%W", "--signal", "USR1@60")),
            PREFIX + ["-t", "15", "--signal", "USR1@60"],
            id="a-site-signal-in-two-words-is-kept",
        ),
        pytest.param(
            ctr(sp={"max_run_time": 600}),
            Settings(sbatch_arguments=("--time=%W", "--comment", "--signal=x")),
            PREFIX + ["--time=15", "--comment", "--signal=x", "--signal=B:TERM@120"],
            id="a-comment-that-looks-like-a-signal-is-no-signal",
        ),
        pytest.param(
            ctr(sp={"supervisor": True}),
            Settings(sbatch_arguments=("--mem=%M",), supervisor_sbatch_arguments=("--partition=workflows",)),
            PREFIX + ["--mem=11995", "--partition=workflows"],
            id="supervisor-arguments",
        ),
        pytest.param(
            ctr(sp={"supervisor": False}),
            Settings(sbatch_arguments=("--mem=%M",), supervisor_sbatch_arguments=("--partition=workflows",)),
            PREFIX + ["--mem=11995"],
            id="supervisor-arguments-only-for-supervisors",
        ),
        pytest.param(
            ctr(sp={"max_run_time": 0}),
            Settings(sbatch_arguments=("--time=%W", "--keep")),
            PREFIX + ["--keep"],
            id="no-max-run-time-drops-argument",
        ),
        pytest.param(
            ctr(sp={"max_run_time": 0}),
            Settings(sbatch_arguments=("--job-name=%U", "-t", "%W", "--mem=%M")),
            PREFIX + [f"--job-name={UUID}", "--mem=11995"],
            id="no-max-run-time-drops-the-option-whose-value-it-was",
        ),
        pytest.param(
            ctr(sp={"max_run_time": 0}),
            Settings(sbatch_arguments=("--time", "%W", "--keep")),
            PREFIX + ["--keep"],
            id="no-max-run-time-drops-the-long-option-too",
        ),
        pytest.param(
            ctr(sp={"max_run_time": 0}),
            Settings(sbatch_arguments=("-Ht", "%W", "--keep")),
            PREFIX + ["-H", "--keep"],
            id="no-max-run-time-drops-only-the-letter-of-a-run",
        ),
        pytest.param(
            ctr(sp={"partitions": []}),
            Settings(sbatch_arguments=("--partition", "%P", "--keep")),
            PREFIX + ["--keep"],
            id="empty-partitions-drop-the-option-too",
        ),
        pytest.param(
            ctr(sp={"max_run_time": 600}),
            Settings(sbatch_arguments=("-t", "%W")),
            PREFIX + ["-t", "15", "--signal=B:TERM@120"],
            id="a-kept-time-in-two-words",
        ),
        pytest.param(
            ctr(),
            Settings(sbatch_arguments=("--constraint=instancetype=%I",)),
            PREFIX + ["--constraint=instancetype="],
            id="no-instance-types-empty-I",
        ),
        pytest.param(
            ctr(),
            Settings(
                sbatch_arguments=("--constraint=instancetype=%I",),
                instance_types={
                    "a": InstanceType("a", vcpus=4, ram=16 * GiB, included_scratch=64 * GiB, price=0.2),
                    "b": InstanceType("b", vcpus=8, ram=32 * GiB, included_scratch=64 * GiB, price=0.1),
                    "c": InstanceType("c", vcpus=2, ram=64 * GiB, included_scratch=64 * GiB, price=0.01),
                },
            ),
            PREFIX + ["--constraint=instancetype=b"],
            id="instance-type-cheapest-fitting",
        ),
        pytest.param(
            ctr(),
            Settings(sbatch_arguments=("%U%C%M%T%G%P%W",)),
            PREFIX,
            id="one-empty-P-drops-the-whole-argument",
        ),
        pytest.param(
            ctr(),
            Settings(sbatch_arguments=("--comment=a%\nb",)),
            PREFIX + ["--comment=a%\nb"],
            id="percent-newline-left-alone",
        ),
    ],
)
def test_sbatch_args(container: Container, settings: Settings, expected: list[str]) -> None:
    assert sbatch_args(container, settings) == expected


@pytest.mark.parametrize(
    ("template", "token"),
    [
        pytest.param(("--x=%X",), "%X", id="unknown-letter"),
        pytest.param(("--x=% ",), "% ", id="percent-space"),
        pytest.param(("--ok=%C", "--y=%y"), "%y", id="second-argument"),
        pytest.param(("--x=%a%b",), "%b", id="last-unknown-reported-as-go"),
    ],
)
def test_bad_template_raises(template: tuple[str, ...], token: str) -> None:
    with pytest.raises(SbatchTemplateError) as info:
        sbatch_args(ctr(), Settings(sbatch_arguments=template))
    assert str(info.value) == (
        f"Unknown substitution parameter {token} in SbatchArgumentsList or SbatchGPUArgumentsList"
    )


def test_bad_gpu_template_only_matters_for_gpu_containers() -> None:
    s = Settings(sbatch_arguments=(), sbatch_gpu_arguments=("--bad=%Q",))
    assert sbatch_args(ctr(), s) == PREFIX
    with pytest.raises(SbatchTemplateError):
        sbatch_args(ctr(rc={"gpu": {"stack": "cuda", "device_count": 1}}), s)


def test_instance_choice_runs_even_without_percent_I() -> None:
    s = Settings(
        sbatch_arguments=("--job-name=%U",),
        instance_types={"tiny": InstanceType("tiny", vcpus=1, ram=1 * GiB, price=0.5)},
    )
    with pytest.raises(UnsatisfiableContainer) as info:
        sbatch_args(ctr(), s)
    assert info.value.uuid == UUID
    assert info.value.available == ['Type "tiny": 1 VCPUs, 1073741824 RAM, 0 Scratch, 0.500000 Price']


@pytest.mark.parametrize(("name", "shown"), [("a b", "'a b'"), ("gpu\n", "'gpu\\n'"), ("\tcpu", "'\\tcpu'")])
def test_a_partition_name_slurm_cannot_have_makes_the_container_unsatisfiable(name: str, shown: str) -> None:
    """Checked even when no argument uses %P: the container is cancelled with the reason, not submitted."""
    with pytest.raises(UnsatisfiableContainer) as info:
        sbatch_args(ctr(sp={"partitions": ["p1", name]}), Settings(sbatch_arguments=("--job-name=%U",)))
    assert info.value.uuid == UUID and info.value.available is None
    assert info.value.reason == (f"scheduling_parameters.partitions[1] is {shown}, which no Slurm partition is named "
                                 "(a name holds no whitespace or control character)")


def test_a_partition_name_with_a_comma_goes_to_slurm_as_a_list_as_go_passes_it() -> None:
    args = sbatch_args(ctr(sp={"partitions": ["a,b", "c"]}), Settings(sbatch_arguments=("--partition=%P",)))
    assert "--partition=a,b,c" in args


# --- substitute, the helper a config validator can reuse -------------------------------------

ALL = {letter: "v" for letter in TEMPLATE_TOKENS if letter != "%"}


@pytest.mark.parametrize(
    ("arg", "values", "expected"),
    [
        pytest.param("--a=%C", {"C": "4"}, "--a=4", id="plain"),
        pytest.param("%%C", {"C": "4"}, "%C", id="escaped"),
        pytest.param("%", {}, "%", id="lone-percent"),
        pytest.param("50%", {}, "50%", id="trailing-percent"),
        pytest.param("--p=%P", {"P": ""}, None, id="drop-empty-P"),
        pytest.param("--w=%W", {"W": "0"}, None, id="drop-zero-W"),
        pytest.param("--w=%W", {"W": "10"}, "--w=10", id="keep-W"),
        pytest.param("--u=%U", {"U": ""}, "--u=", id="empty-U-not-dropped"),
    ],
)
def test_substitute(arg: str, values: dict[str, str], expected: str | None) -> None:
    assert substitute(arg, values) == expected


def test_substitute_known_letter_without_value_is_an_error() -> None:
    with pytest.raises(SbatchTemplateError):
        substitute("%C", {})


def _scan(arg: str) -> str | None:
    """An independent left-to-right reading of the template rules, as the oracle."""
    out, i = [], 0
    while i < len(arg):
        if arg[i] == "%" and i + 1 < len(arg) and arg[i + 1] != "\n":
            letter = arg[i + 1]
            if letter == "%":
                out.append("%")
            elif letter in ALL:
                out.append(ALL[letter])
            else:
                raise SbatchTemplateError(letter)
            i += 2
        else:
            out.append(arg[i])
            i += 1
    return "".join(out)


@given(st.text(alphabet=st.sampled_from(list("%CGIMPTUWxX ab-=\n")), max_size=30))
def test_substitute_agrees_with_a_plain_scanner(arg: str) -> None:
    """With every token given a value, substitute and a plain scanner agree (error or text)."""
    try:
        expected = _scan(arg)
    except SbatchTemplateError:
        with pytest.raises(SbatchTemplateError, match=r"^Unknown substitution parameter %. in "):
            substitute(arg, ALL)
    else:
        assert substitute(arg, ALL) == expected
