"""Tables (``status``) in a pipe: laid out at their own width, not squeezed into 80 columns cell by cell."""

from __future__ import annotations

import pytest
from rich import box
from rich.table import Table

from slurm_dispatch.cli.common import table_text


def _wide_table() -> Table:
    table = Table(box=box.SIMPLE, pad_edge=False)
    for header in ("container", "state", "slurm state", "reason"):
        table.add_column(header, overflow="fold")
    for _ in range(3):
        table.add_row("zzzzz-dz642-2hhj018bhjknq5h", "Locked", "PENDING",
                      "Nodes required for job are DOWN, DRAINED or reserved for jobs in higher priority partitions")
    return table


def test_in_a_pipe_without_columns_every_row_stays_on_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)  # pytest's stdout is not a terminal
    lines = table_text(_wide_table()).splitlines()
    assert len(lines) == 2 + 3, lines  # titles, rule, one line per row
    assert all("PENDING" in line and line.endswith("partitions") for line in lines[2:])


def test_columns_still_sets_the_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    lines = table_text(_wide_table()).splitlines()
    assert max(len(line) for line in lines) <= 60 and len(lines) > 5
