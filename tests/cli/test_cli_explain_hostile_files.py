"""``explain --container-file`` on files that are not a container record: one ``error:`` line and exit 2, never a
traceback, never a read that blocks for ever or fills the memory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from slurm_dispatch.cli.explain import CONTAINER_FILE_MAX_BYTES


def explain_file(cli: Any, path: Path | str) -> tuple[int, str, str]:
    result = cli("explain", "--container-file", str(path))
    return result.exit_code, result.stdout, result.stderr


def test_a_fifo_is_refused_without_waiting_for_a_writer(cli: Any, tmp_path: Path) -> None:
    fifo = tmp_path / "c.json"
    os.mkfifo(fifo)
    assert explain_file(cli, fifo) == (
        2, "", f"error: {fifo}: not a regular file (give the JSON file of a container record)\n")


@pytest.mark.parametrize("path", [pytest.param("/dev/zero", id="endless-device"), pytest.param("/", id="directory")])
def test_what_is_not_a_regular_file_is_refused(cli: Any, path: str) -> None:
    assert explain_file(cli, path) == (
        2, "", f"error: {path}: not a regular file (give the JSON file of a container record)\n")


def test_a_file_over_the_limit_is_refused_unread(cli: Any, tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    with big.open("wb") as out:
        out.truncate(CONTAINER_FILE_MAX_BYTES + 1)  # sparse: costs no disk
    assert explain_file(cli, big) == (2, "", f"error: {big}: larger than 64 MiB: not a container record\n")


@pytest.mark.parametrize(("data", "problem"), [
    pytest.param(b"[" * 100_000, "not a JSON container record: nested too deeply", id="deep-nesting"),
    pytest.param(b'{"uuid": "zzzzz-dz642-queuedcontainer", "mounts": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_001,
                 "not a JSON container record: nested too deeply", id="deep-object"),
    pytest.param(b"\xff\xfe{}", "not a JSON container record: not UTF-8 text (invalid start byte at byte 0)",
                 id="not-utf8"),
    pytest.param(b'{"priority": ' + b"9" * 5000 + b"}",
                 "not a JSON container record: Exceeds the limit (4300 digits) for integer string conversion: value "
                 "has 5000 digits; use sys.set_int_max_str_digits() to increase the limit", id="huge-integer"),
])
def test_hostile_contents_are_one_error_line(cli: Any, tmp_path: Path, data: bytes, problem: str) -> None:
    path = tmp_path / "c.json"
    path.write_bytes(data)
    assert explain_file(cli, path) == (2, "", f"error: {path}: {problem}\n")
