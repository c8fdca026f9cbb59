"""Tests of slurm_dispatch.slurm.instance_types: the scratch estimate, instance choice, the log text."""

from __future__ import annotations

from typing import Any

import pytest

from slurm_dispatch.errors import UnsatisfiableContainer
from slurm_dispatch.model import Container, MiB
from slurm_dispatch.settings import InstanceType, InstanceTypeGPU, Settings
from slurm_dispatch.slurm.instance_types import (
    choose_instance_type,
    eligible_instance_types,
    estimate_scratch,
    ram_needed,
)

GiB = 1 << 30
UUID = "zzzzz-dz642-queuedcontainer"


def ctr(**over: Any) -> Container:
    """A container record like the `queued` fixture, with top-level keys and constraint keys overridable."""
    rc = {"ram": 12000000000, "vcpus": 4, "keep_cache_ram": 0, "keep_cache_disk": 0}
    rc.update(over.pop("rc", {}))
    sp = {"partitions": None, "preemptible": False, "max_run_time": 0}
    sp.update(over.pop("sp", {}))
    raw: dict[str, Any] = {
        "uuid": UUID,
        "state": "Queued",
        "priority": 1,
        "created_at": "2016-01-11T11:11:11.111111000Z",
        "container_image": "test",
        "runtime_constraints": rc,
        "scheduling_parameters": sp,
        "mounts": {
            "/tmp": {"kind": "tmp", "capacity": 24000000000},
            "/var/spool/cwl": {"kind": "tmp", "capacity": 24000000000},
        },
    }
    raw.update(over)
    return Container.from_api(raw)


def types(*its: InstanceType) -> dict[str, InstanceType]:
    return {it.name: it for it in its}


# --- estimate_scratch ------------------------------------------------------------------------

PDH = "fa3c1a9cb6783f85f2ecda037e07b8c3"


@pytest.mark.parametrize(
    ("mounts", "image", "keep_cache_disk", "expected"),
    [
        pytest.param(
            {"/a": {"kind": "tmp", "capacity": 24000000000}, "/b": {"kind": "tmp", "capacity": 24000000000}},
            "test",
            0,
            48000000000,
            id="queued-fixture",
        ),
        pytest.param(
            {"/a": {"kind": "collection", "capacity": 5}, "/b": {"kind": "tmp", "capacity": 7}},
            "test",
            0,
            7,
            id="only-tmp-counts",
        ),
        pytest.param({}, f"{PDH}+121", 0, 0, id="manifest-too-small-for-an-image"),
        pytest.param({}, f"{PDH}+122", 0, 2 * 64 * MiB, id="one-block-image-counted-twice"),
        pytest.param({}, f"{PDH}+167", 0, 4 * 64 * MiB, id="image-167-is-2-blocks"),
        pytest.param(
            {"/t": {"kind": "tmp", "capacity": 10 * GiB}},
            f"{PDH}+167",
            0,
            10 * GiB + 2 * 64 * MiB,
            id="tmp-covers-image-buffer",
        ),
        pytest.param(
            {"/t": {"kind": "tmp", "capacity": 1}},
            f"{PDH}+167",
            3,
            4 * 64 * MiB + 3,
            id="keep-cache-disk-added",
        ),
        pytest.param({}, f"{PDH.upper()}+167", 0, 0, id="not-a-pdh-uppercase"),
        pytest.param({}, f"{PDH}+167+K@zzzzz", 0, 0, id="not-a-bare-pdh"),
        pytest.param({}, f"{PDH}+167\n", 0, 0, id="not-a-pdh-with-a-newline-after-it"),
        pytest.param({}, f"{PDH}+\u0661\u0666\u0667", 0, 0, id="not-a-pdh-with-arabic-indic-digits"),
        pytest.param({}, f"{PDH}+{2**63}", 0, 0, id="size-past-int64-as-go"),
        pytest.param({}, f"{PDH}+{2**63 - 1}", 0, (2**63 - 1 - 80) // 42 * 64 * MiB * 2, id="size-int64-max"),
    ],
)
def test_estimate_scratch(mounts: dict[str, Any], image: str, keep_cache_disk: int, expected: int) -> None:
    c = ctr(mounts=mounts, container_image=image, rc={"keep_cache_disk": keep_cache_disk})
    assert estimate_scratch(c) == expected


# --- ram_needed ------------------------------------------------------------------------------


def test_ram_needed_formula() -> None:
    c = ctr(rc={"ram": 1000 * MiB, "keep_cache_ram": 100 * MiB, "vcpus": 2})
    s = Settings(reserve_extra_ram=50 * MiB, local_keep_blob_buffers_per_vcpu=1)
    base = 1150 * MiB + 220 * MiB + 1 * 2 * 64 * MiB * 11 // 10
    assert ram_needed(c, s) == base * 100 // 95
    s0 = Settings(reserve_extra_ram=50 * MiB, local_keep_blob_buffers_per_vcpu=0)
    assert ram_needed(c, s0) == 1150 * MiB * 100 // 95


# --- choose_instance_type --------------------------------------------------------------------

SMALL = InstanceType("small", vcpus=2, ram=4 * GiB, included_scratch=100 * GiB, price=0.1)
BIG = InstanceType("big", vcpus=8, ram=32 * GiB, included_scratch=100 * GiB, price=0.4)
BIG_CHEAP = InstanceType("big-cheap", vcpus=8, ram=32 * GiB, included_scratch=100 * GiB, price=0.3)
BIG_PRE = InstanceType(
    "big.preemptible", vcpus=8, ram=32 * GiB, included_scratch=100 * GiB, price=0.2, preemptible=True
)
HUGE = InstanceType("huge", vcpus=64, ram=256 * GiB, included_scratch=1000 * GiB, price=2.0)
CUDA = InstanceType(
    "gpu.cuda",
    vcpus=8,
    ram=32 * GiB,
    included_scratch=100 * GiB,
    price=1.0,
    gpu=InstanceTypeGPU(
        stack="cuda", driver_version="12.4", hardware_target="8.6", device_count=2, vram=16 * GiB
    ),
)
ROCM = InstanceType(
    "gpu.rocm",
    vcpus=8,
    ram=32 * GiB,
    included_scratch=100 * GiB,
    price=1.0,
    gpu=InstanceTypeGPU(
        stack="rocm", driver_version="6.1", hardware_target="gfx1100", device_count=1, vram=24 * GiB
    ),
)


def gpu(**kw: Any) -> dict[str, Any]:
    return {
        "gpu": {
            "stack": "cuda",
            "device_count": 1,
            "driver_version": "11.0",
            "hardware_target": ["8.0"],
            "vram": 8 * GiB,
            **kw,
        }
    }


@pytest.mark.parametrize(
    ("configured", "over", "expected"),
    [
        pytest.param((SMALL, BIG, HUGE), {}, "big", id="cheapest-that-fits"),
        pytest.param((SMALL, BIG, BIG_CHEAP), {}, "big-cheap", id="cheaper-of-two-fitting"),
        pytest.param((BIG, BIG_PRE), {}, "big", id="not-preemptible-skips-preemptible"),
        pytest.param(
            (BIG, BIG_PRE), {"sp": {"preemptible": True}}, "big.preemptible", id="preemptible-wants-one"
        ),
        pytest.param(
            (SMALL, BIG), {"rc": {"ram": 1 * GiB, "vcpus": 1}, "mounts": {}}, "small", id="small-fits"
        ),
        pytest.param(
            (SMALL, BIG), {"rc": {"ram": 1 * GiB, "vcpus": 3}, "mounts": {}}, "big", id="vcpus-count"
        ),
        pytest.param((BIG, CUDA), {"rc": gpu()}, "gpu.cuda", id="cuda-version-target"),
        pytest.param((CUDA,), {"rc": gpu(hardware_target=["7.5", "8.6"])}, "gpu.cuda", id="cuda-exact-list"),
        pytest.param(
            (ROCM,),
            {"rc": gpu(stack="rocm", driver_version="6.0", hardware_target=["gfx1100"])},
            "gpu.rocm",
            id="rocm-target",
        ),
    ],
)
def test_choose_instance_type(
    configured: tuple[InstanceType, ...], over: dict[str, Any], expected: str
) -> None:
    s = Settings(instance_types=types(*configured))
    chosen = choose_instance_type(ctr(**over), s)
    assert chosen is not None
    assert chosen.name == expected


def test_none_configured_gives_none() -> None:
    assert choose_instance_type(ctr(), Settings()) is None
    assert eligible_instance_types(ctr(), Settings()) == []


def test_ram_boundary_uses_the_95_percent_rule() -> None:
    c = ctr(rc={"ram": 1 * GiB, "vcpus": 1}, mounts={})
    need = GiB * 100 // 95
    exact = InstanceType("exact", vcpus=1, ram=need, price=1)
    short = InstanceType("short", vcpus=1, ram=need - 1, price=0.5)
    s = Settings(reserve_extra_ram=0, local_keep_blob_buffers_per_vcpu=0, instance_types=types(exact, short))
    chosen = choose_instance_type(c, s)
    assert chosen is not None and chosen.name == "exact"


def test_sort_order_price_then_more_ram_vcpus_scratch_then_name() -> None:
    a = InstanceType("a", vcpus=8, ram=32 * GiB, included_scratch=100 * GiB, price=0.5)
    b = InstanceType("b", vcpus=8, ram=64 * GiB, included_scratch=100 * GiB, price=0.5)
    c = InstanceType("c", vcpus=16, ram=32 * GiB, included_scratch=100 * GiB, price=0.5)
    d = InstanceType("d", vcpus=8, ram=32 * GiB, included_scratch=200 * GiB, price=0.5)
    e = InstanceType("e", vcpus=8, ram=32 * GiB, included_scratch=100 * GiB, price=0.5)
    cheap = InstanceType("z-cheap", vcpus=8, ram=32 * GiB, included_scratch=100 * GiB, price=0.4)
    s = Settings(instance_types=types(e, d, c, b, a, cheap), maximum_price_factor=2)
    assert [t.name for t in eligible_instance_types(ctr(), s)] == ["z-cheap", "b", "c", "d", "a", "e"]


@pytest.mark.parametrize(
    ("factor", "expected"),
    [
        pytest.param(1.5, ["big-cheap", "big"], id="default-1.5"),
        pytest.param(1.0, ["big-cheap"], id="factor-1-only-cheapest-price"),
        pytest.param(0.5, ["big-cheap"], id="below-1-means-1"),
        pytest.param(10.0, ["big-cheap", "big", "huge"], id="generous"),
    ],
)
def test_maximum_price_factor_cut(factor: float, expected: list[str]) -> None:
    s = Settings(instance_types=types(BIG, BIG_CHEAP, HUGE), maximum_price_factor=factor)
    assert [t.name for t in eligible_instance_types(ctr(), s)] == expected


@pytest.mark.parametrize(
    "over",
    [
        pytest.param({"rc": {"ram": 300 * GiB}}, id="too-much-ram"),
        pytest.param({"rc": {"vcpus": 65}}, id="too-many-vcpus"),
        pytest.param({"mounts": {"/t": {"kind": "tmp", "capacity": 2000 * GiB}}}, id="too-much-scratch"),
        pytest.param({"rc": {"keep_cache_disk": 2000 * GiB}}, id="keep-cache-disk-counts"),
        pytest.param({"sp": {"preemptible": True}}, id="no-preemptible-type"),
        pytest.param({"rc": gpu()}, id="gpu-on-cpu-types"),
    ],
)
def test_unsatisfiable_lists_available_types_by_price(over: dict[str, Any]) -> None:
    s = Settings(instance_types=types(HUGE, SMALL, BIG))
    with pytest.raises(UnsatisfiableContainer) as info:
        choose_instance_type(ctr(**over), s)
    err = info.value
    assert err.uuid == UUID
    assert err.reason == "constraints not satisfiable by any configured instance type"
    assert err.available == [
        'Type "small": 2 VCPUs, 4294967296 RAM, 107374182400 Scratch, 0.100000 Price',
        'Type "big": 8 VCPUs, 34359738368 RAM, 107374182400 Scratch, 0.400000 Price',
        'Type "huge": 64 VCPUs, 274877906944 RAM, 1073741824000 Scratch, 2.000000 Price',
    ]
    assert err.log_text() == (
        f"cannot run container {UUID}: constraints not satisfiable by any configured instance type\n"
        "Available instance types:\n"
        'Type "small": 2 VCPUs, 4294967296 RAM, 107374182400 Scratch, 0.100000 Price\n'
        'Type "big": 8 VCPUs, 34359738368 RAM, 107374182400 Scratch, 0.400000 Price\n'
        'Type "huge": 64 VCPUs, 274877906944 RAM, 1073741824000 Scratch, 2.000000 Price\n'
    )


@pytest.mark.parametrize(
    "gpu_over",
    [
        pytest.param({"device_count": 3}, id="too-few-devices"),
        pytest.param({"vram": 32 * GiB}, id="too-little-vram"),
        pytest.param({"driver_version": "12.5"}, id="driver-too-old"),
        pytest.param({"driver_version": ""}, id="driver-unparsable"),
        pytest.param({"hardware_target": ["9.0"]}, id="capability-too-low"),
        pytest.param({"hardware_target": []}, id="cuda-needs-a-target"),
        pytest.param({"hardware_target": ["7.5", "9.0"]}, id="capability-not-in-list"),
        pytest.param({"stack": "rocm", "hardware_target": ["gfx1100"]}, id="wrong-stack"),
    ],
)
def test_gpu_mismatch_is_unsatisfiable(gpu_over: dict[str, Any]) -> None:
    s = Settings(instance_types=types(CUDA))
    with pytest.raises(UnsatisfiableContainer):
        choose_instance_type(ctr(rc=gpu(**gpu_over)), s)


def test_gpu_requirements_ignored_without_devices() -> None:
    # device_count 0: driver and capability are not checked (stack still must match).
    s = Settings(instance_types=types(BIG))
    c = ctr(rc={"gpu": {"stack": "", "device_count": 0, "driver_version": "999"}})
    chosen = choose_instance_type(c, s)
    assert chosen is not None and chosen.name == "big"


def test_invalid_gpu_stack_reports_no_types() -> None:
    s = Settings(instance_types=types(BIG, CUDA))
    with pytest.raises(UnsatisfiableContainer) as info:
        choose_instance_type(ctr(rc=gpu(stack="opencl")), s)
    err = info.value
    assert err.available == []
    assert err.log_text() == (
        f'cannot run container {UUID}: Invalid GPU stack "opencl", expected to be blank or one of '
        "'cuda' or 'rocm'\n"
        "No instance types are configured.\n"
    )


def test_log_text_with_empty_available() -> None:
    err = UnsatisfiableContainer(UUID, "some reason", [])
    assert (
        err.log_text()
        == f"cannot run container {UUID}: some reason\nNo instance types are configured.\n"
    )


def test_log_text_of_a_refusal_not_about_instance_types_has_no_types_line() -> None:
    err = UnsatisfiableContainer(UUID, "sbatch refused the job 3 times in a row: no", available=None)
    assert err.log_text() == f"cannot run container {UUID}: sbatch refused the job 3 times in a row: no\n"


def test_available_lines_tie_in_price_sorted_by_name() -> None:
    x = InstanceType("x", vcpus=1, ram=1, price=1.0)
    a = InstanceType("a", vcpus=1, ram=1, price=1.0)
    s = Settings(instance_types=types(x, a))
    with pytest.raises(UnsatisfiableContainer) as info:
        choose_instance_type(ctr(), s)
    assert [line.split('"')[1] for line in info.value.available] == ["a", "x"]


def test_free_types_win_over_priced_ones() -> None:
    free = InstanceType("free", vcpus=8, ram=32 * GiB, included_scratch=100 * GiB, price=0.0)
    free2 = InstanceType("free2", vcpus=16, ram=32 * GiB, included_scratch=100 * GiB, price=0.0)
    s = Settings(instance_types=types(BIG, free, free2))
    assert [t.name for t in eligible_instance_types(ctr(), s)] == ["free2", "free"]
