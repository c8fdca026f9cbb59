"""Messages that say what is wrong in words that apply: each row was a message that misled."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from slurm_dispatch.config import LoadedConfig, load_settings
from slurm_dispatch.errors import ConfigError


def load(config: Path, **kwargs: Any) -> LoadedConfig:
    own = config.with_name("slurm-dispatch.yml")
    if not own.exists():
        own.write_text("", encoding="utf-8")
    return load_settings(path=config, environ=kwargs.pop("environ", {}), skip_legacy=kwargs.pop("skip_legacy", True),
                         dispatch_config=kwargs.pop("dispatch_config", own), **kwargs)


def test_a_second_document_says_a_single_one_was_expected(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text("Clusters:\n  zzzzz: {}\n---\nfoo: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load(config)
    assert str(info.value) == (f"{config}: invalid YAML: line 3, column 1: expected a single document, but found "
                               "another one (a '---' line starts a new document: remove it, or merge the documents)")
