"""Instance-type choice and the scratch estimate: pure functions over a container and Settings.

Port of lib/dispatchcloud/container/node_size.go (EstimateScratchSpace,
InstanceResourcesNeeded, ChooseInstanceType) and of the ConstraintsNotSatisfiable
log text in sdk/go/dispatch/dispatch.go (Dispatcher.start).

The Slurm dispatcher uses the cheapest suitable type for ``%I``, and, whenever
``InstanceTypes`` is configured, as a check that *some* type can run the
container at all; a container no type can run is cancelled with the list of
types written to its log. Nothing here does I/O, reads the clock or the
environment.
"""

from __future__ import annotations

import json
import re

from slurm_dispatch.errors import UnsatisfiableContainer
from slurm_dispatch.model import Container, MiB
from slurm_dispatch.settings import InstanceType, Settings

NOT_SATISFIABLE_REASON = "constraints not satisfiable by any configured instance type"

_PDH_SIZE_RE = re.compile(r"[0-9a-f]{32}\+([0-9]+)")
"""A portable data hash and its manifest size, used with fullmatch: a trailing newline is no PDH (``$`` would let
one through), and Go's ``\\d`` (node_size.go: pdhRegexp) is ASCII only."""
_INT64_MAX = 2**63 - 1

# Instance choice asks for 100/95 of the RAM it needs: configured RAM sizes are
# nominal, and the kernel and firmware take a few percent of them.
_RAM_DISCOUNT_PERCENT = 5
# A keepstore process runs beside each container when LocalKeepBlobBuffersPerVCPU > 0:
# about 200 MiB for itself plus 10% for GOGC=10, and 64 MiB per blob buffer plus 10%.
_KEEPSTORE_BASE_RAM = 220 * MiB
_KEEP_BLOCK_BYTES = 64 * MiB


def _docker_image_bytes(container_image: str) -> int:
    """Return the disk space a docker image is guessed to take, from its manifest size. Pure.

    An image stored by arv-keepdocker has a manifest of predictable shape: about 80
    characters of file name and segment, then 42 characters per 64 MiB block
    locator. So the PDH's size suffix tells how many blocks the image has.
    """
    m = _PDH_SIZE_RE.fullmatch(container_image)
    if not m:
        return 0
    manifest_len = int(m.group(1))
    if manifest_len < 122 or manifest_len > _INT64_MAX:  # Go's strconv.ParseInt fails past int64: 0
        return 0
    return ((manifest_len - 80) // 42) * _KEEP_BLOCK_BYTES


def estimate_scratch(container: Container) -> int:
    """Return the bytes of local disk the container needs (the source of ``%T``). Pure.

    That is the total capacity of its ``tmp`` mounts, raised to at least the image
    size (the image tarball is buffered there while it loads, then freed), plus
    the extracted image, plus the arv-mount disk cache (``keep_cache_disk``).
    Port of lib/dispatchcloud/container/node_size.go: EstimateScratchSpace.
    """
    tmp = sum(m.capacity for m in container.mounts.values() if m.kind == "tmp")
    image = _docker_image_bytes(container.container_image)
    return max(tmp, image) + image + container.runtime_constraints.keep_cache_disk


def ram_needed(container: Container, settings: Settings) -> int:
    """Return the RAM in bytes an instance must have to run the container. Pure.

    ram + keep_cache_ram + ReserveExtraRAM, plus keepstore's overhead when
    LocalKeepBlobBuffersPerVCPU > 0, all scaled by 100/95. This is for instance
    choice only; ``%M`` does not include the overhead or the scaling.
    Port of lib/dispatchcloud/container/node_size.go: InstanceResourcesNeeded.
    """
    rc = container.runtime_constraints
    need = rc.ram + rc.keep_cache_ram + settings.reserve_extra_ram
    buffers = settings.local_keep_blob_buffers_per_vcpu
    if buffers > 0:
        need += _KEEPSTORE_BASE_RAM
        need += buffers * rc.vcpus * _KEEP_BLOCK_BYTES * 11 // 10
    return need * 100 // (100 - _RAM_DISCOUNT_PERCENT)


def parse_version(text: str) -> float | None:
    """Return a GPU driver version as the number Go's strconv.ParseFloat reads ("12.4"), None if it reads none. Pure.

    The one rule: the config loader refuses a GPU type whose version reads none (lib/config/load.go:
    checkGPUVersions), and the instance type choice compares versions as these numbers.
    """
    if not text or text != text.strip() or "_" in text:
        return None  # Go's ParseFloat accepts neither surrounding spaces nor bare underscores
    try:
        return float(text)
    except ValueError:
        return None


def _version_less(have: str, want: str) -> bool | None:
    """Return have < want as decimal numbers ("12.4" < "12.10" is False, as in Go), None if unparsable."""
    have_n, want_n = parse_version(have), parse_version(want)
    return None if have_n is None or want_n is None else have_n < want_n


def _gpu_capability_ok(container: Container, it: InstanceType) -> bool:
    """Return whether the type's GPU hardware target satisfies the container's (stack already checked)."""
    gpu = container.runtime_constraints.gpu
    targets = gpu.hardware_target
    if gpu.stack == "cuda":
        if len(targets) > 1:
            # Several CUDA capabilities listed: the node must have one of them exactly.
            return it.gpu.hardware_target in targets
        if len(targets) == 1:
            less = _version_less(it.gpu.hardware_target, targets[0])
            return less is False
        return False
    if gpu.stack == "rocm":
        # A ROCm target is an LLVM gfx name, so only an exact match will do.
        return it.gpu.hardware_target in targets
    return True


def _eligible(container: Container, it: InstanceType, *, ram: int, scratch: int) -> bool:
    rc = container.runtime_constraints
    gpu = rc.gpu
    if it.scratch < scratch or it.ram < ram or it.vcpus < rc.vcpus:
        return False
    if it.preemptible != container.scheduling_parameters.preemptible:
        return False
    if it.gpu.stack != gpu.stack or it.gpu.device_count < gpu.device_count or it.gpu.vram < gpu.vram:
        return False
    if gpu.device_count > 0:
        if _version_less(it.gpu.driver_version, gpu.driver_version) is not False:
            return False
        if not _gpu_capability_ok(container, it):
            return False
    return True


def available_lines(types: list[InstanceType]) -> list[str]:
    """Return one ``Type "<name>": ...`` line per instance type, sorted by price (then name). Pure.

    The format is the Go dispatcher's (sdk/go/dispatch/dispatch.go: Dispatcher.start): RAM and scratch
    in bytes, the price with six decimals. Ties in price are ordered by name so the
    text is the same on every run (Go leaves them in map order).
    """
    ordered = sorted(types, key=lambda t: (t.price, t.name))
    return [
        f"Type {_go_quote(t.name)}: {t.vcpus} VCPUs, {t.ram} RAM, {t.scratch} Scratch, {t.price:f} Price"
        for t in ordered
    ]


def _go_quote(text: str) -> str:
    """Return ``text`` in double quotes with Go ``%q`` escapes (for the names we meet, JSON's are the same)."""
    return json.dumps(text, ensure_ascii=False)


def eligible_instance_types(container: Container, settings: Settings) -> list[InstanceType]:
    """Return the instance types that can run the container, cheapest first. Pure.

    Types must have enough RAM (see ``ram_needed``), scratch, VCPUs, the same
    preemptible setting, and for GPU containers a matching stack, enough devices
    and VRAM, a recent enough driver and a suitable hardware target. They are
    sorted by price ascending, then RAM, VCPUs and scratch descending, then name;
    any type dearer than the cheapest × MaximumPriceFactor (at least 1) is dropped.
    Returns [] when no InstanceTypes are configured.
    Port of lib/dispatchcloud/container/node_size.go: ChooseInstanceType.

    Raises:
        UnsatisfiableContainer: types are configured but none fits, or the GPU
            stack is not "", "cuda" or "rocm" (then ``available`` is empty, so the
            log says ``No instance types are configured.``, as Go reports it).
    """
    types = list(settings.instance_types.values())
    if not types:
        return []
    stack = container.runtime_constraints.gpu.stack
    if stack not in ("", "cuda", "rocm"):
        raise UnsatisfiableContainer(
            container.uuid,
            f"Invalid GPU stack {_go_quote(stack)}, expected to be blank or one of 'cuda' or 'rocm'",
            [],
        )
    ram = ram_needed(container, settings)
    scratch = estimate_scratch(container)
    fits = [it for it in types if _eligible(container, it, ram=ram, scratch=scratch)]
    if not fits:
        raise UnsatisfiableContainer(container.uuid, NOT_SATISFIABLE_REASON, available_lines(types))
    fits.sort(key=lambda t: (t.price, -t.ram, -t.vcpus, -t.scratch, t.name))
    # Go computes the cap in map order and gets an order-dependent answer when some
    # eligible types are free and others are not; here the cap is always the cheapest
    # eligible price × factor, so free types crowd out priced ones (the cap is 0).
    cap = fits[0].price * max(settings.maximum_price_factor, 1.0)
    return [fits[0]] + [t for t in fits[1:] if not t.price > cap]


def choose_instance_type(container: Container, settings: Settings) -> InstanceType | None:
    """Return the cheapest instance type that can run the container, or None when none are configured. Pure.

    See ``eligible_instance_types`` for the rules. When InstanceTypes is
    configured this runs for every container, whether or not ``%I`` is used.

    Raises:
        UnsatisfiableContainer: types are configured but none can run the container.
    """
    fits = eligible_instance_types(container, settings)
    return fits[0] if fits else None


__all__ = [
    "NOT_SATISFIABLE_REASON",
    "available_lines",
    "choose_instance_type",
    "eligible_instance_types",
    "estimate_scratch",
    "parse_version",
    "ram_needed",
]
