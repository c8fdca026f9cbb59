"""Messages that say what is wrong in words that apply: each row was a message that misled."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from slurm_dispatch.config import LoadedConfig, load_settings
from slurm_dispatch.errors import ConfigError


def load(config: Path, **kwargs: Any) -> LoadedConfig:
    """load_settings of ``config`` (or ``path=``) with no environment, no legacy file and an empty own file."""
    path = kwargs.pop("path", config)
    own = config.with_name("slurm-dispatch.yml")
    if not own.exists():
        own.write_text("", encoding="utf-8")
    return load_settings(path=path, environ=kwargs.pop("environ", {}), skip_legacy=kwargs.pop("skip_legacy", True),
                         dispatch_config=kwargs.pop("dispatch_config", own), **kwargs)


def test_a_second_document_says_a_single_one_was_expected(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text("Clusters:\n  zzzzz: {}\n---\nfoo: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load(config)
    assert str(info.value) == (f"{config}: invalid YAML: line 3, column 1: expected a single document, but found "
                               "another one (a '---' line starts a new document: remove it, or merge the documents)")


def test_a_token_variable_ending_in_a_newline_gets_no_yaml_hint(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text("Clusters:\n  zzzzz: {}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load(config, environ={"ARVADOS_API_TOKEN": "abcdef\n"})
    text = str(info.value)
    assert "YAML" not in text and "abcdef" not in text
    assert text.startswith("ARVADOS_API_TOKEN: contains a newline at the end (an environment variable keeps every "
                           "character: set it without the final line break)")


def test_a_token_key_ending_in_a_newline_keeps_the_yaml_hint(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text("Clusters:\n  zzzzz:\n    SystemRootToken: |\n      abcdef\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="a YAML '[|]' block scalar ends with a newline"):
        load(config)


def test_lowercase_clusters_says_keys_are_case_sensitive(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text("clusters:\n  zzzzz: {}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load(config)
    assert str(info.value) == (f"{config}: Clusters: no Clusters key; found 'clusters': keys are case-sensitive, "
                               "write Clusters")


def test_a_legacy_file_alone_is_not_called_the_cluster_configuration_file(tmp_path: Path) -> None:
    legacy = tmp_path / "crunch-dispatch-slurm.yml"
    legacy.write_text("PollPeriod: 5s\n", encoding="utf-8")
    loaded = load(legacy, cluster_id="zzzzz", environ={"ARVADOS_CONFIG": str(tmp_path / "absent.yml")},
                  skip_legacy=False)
    wording = [w for w in loaded.warnings if w.startswith("you should remove")]
    assert wording == [(f"you should remove the legacy crunch-dispatch-slurm config file ({legacy}) after migrating "
                        "its keys to a cluster configuration file (none was read: Arvados reads $ARVADOS_CONFIG, "
                        "else /etc/arvados/config.yml)")]


@pytest.mark.parametrize("flag", ["path", "legacy_path", "dispatch_config"])
@pytest.mark.parametrize("empty", ["", Path("")])
def test_an_empty_path_says_it_is_empty(tmp_path: Path, flag: str, empty: object) -> None:
    config = tmp_path / "config.yml"
    config.write_text("Clusters:\n  zzzzz: {}\n", encoding="utf-8")
    kwargs: dict[str, Any] = {flag: empty}
    if flag == "legacy_path":
        kwargs["skip_legacy"] = False
    with pytest.raises(ConfigError, match=r"^--[-a-z]+: the path is empty \(or '\.', a directory\): name a file"):
        load(config, **kwargs)


def test_a_state_directory_that_is_a_regular_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text("Clusters:\n  zzzzz: {}\n", encoding="utf-8")
    state = tmp_path / "state"
    state.write_text("", encoding="utf-8")
    own = tmp_path / "slurm-dispatch.yml"
    for directory, what in ((state, "it"), (state / "sub", repr(str(state)) + " in it")):
        own.write_text(f"Service:\n  StateDirectory: {directory}\n", encoding="utf-8")
        with pytest.raises(ConfigError) as info:
            load(config)
        assert str(info.value) == (f"{own}: Service.StateDirectory: {str(directory)!r} cannot be the state directory: "
                                   f"{what} is not a directory (the service keeps its state file there, and would "
                                   "start drained until it could read it)")


def test_a_state_directory_that_does_not_exist_yet_is_fine(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text("Clusters:\n  zzzzz: {}\n", encoding="utf-8")
    tmp_path.joinpath("slurm-dispatch.yml").write_text(f"Service:\n  StateDirectory: {tmp_path / 'a' / 'b'}\n",
                                                       encoding="utf-8")
    assert load(config).settings.state_directory == str(tmp_path / "a" / "b")
