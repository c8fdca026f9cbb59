"""A key given twice in one map: the last one is used, as Arvados uses it, with a warning naming both lines.

Go's loader keeps the last value too (lib/config/load.go: Load, whose FIXME says it should refuse them); a second
``Containers:`` block used to replace the first here without a word.
"""

from __future__ import annotations

from pathlib import Path

from slurm_dispatch.config import load_settings
from slurm_dispatch.config.safe_yaml import parse_yaml
from slurm_dispatch.settings import Settings

TWO_BLOCKS = """\
Clusters:
  zzzzz:
    Containers:
      MinRetryPeriod: 5s
    Containers:
      ReserveExtraRAM: 1KiB
"""


def load(tmp_path: Path, text: str, *, own: str = "") -> list[str]:
    config = tmp_path / "config.yml"
    config.write_text(text, encoding="utf-8")
    dispatch = tmp_path / "slurm-dispatch.yml"
    dispatch.write_text(own, encoding="utf-8")
    return load_settings(path=config, environ={}, skip_legacy=True, dispatch_config=dispatch).warnings


def test_a_second_block_wins_with_a_warning_naming_the_key_and_both_lines(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    warnings = load(tmp_path, TWO_BLOCKS)
    assert (f"{config}: line 5: Clusters.zzzzz.Containers is given again (first on line 3); the last one is used "
            "and the first ignored, as Arvados does: merge them into one") in warnings
    loaded = load_settings(path=config, environ={}, skip_legacy=True, dispatch_config=tmp_path / "slurm-dispatch.yml")
    assert loaded.settings.reserve_extra_ram == 1024
    assert loaded.settings.min_retry_period == Settings().min_retry_period != 5.0  # the first block is gone


def test_the_own_file_is_checked_too(tmp_path: Path) -> None:
    warnings = load(tmp_path, "Clusters: {zzzzz: {}}\n", own="Limits:\n  MaxSupervisors: 1\n  MaxSupervisors: 2\n")
    assert any("slurm-dispatch.yml: line 3: Limits.MaxSupervisors is given again (first on line 2)" in w
               for w in warnings), warnings


def test_keys_go_reads_as_the_same_are_the_same_and_aliases_are_reported_once() -> None:
    duplicates: list[tuple[str, int, int]] = []
    parse_yaml("base: &b {a: 1, a: 2}\nx: [*b, *b]\n1e3: x\n1000: y\n", duplicates=duplicates)
    assert duplicates == [("base.a", 1, 1), ("1000", 3, 4)]


def test_merge_keys_are_not_duplicates() -> None:
    duplicates: list[tuple[str, int, int]] = []
    parse_yaml("base: &b {a: 1}\nx:\n  <<: *b\n  a: 2\n", duplicates=duplicates)
    assert duplicates == []
