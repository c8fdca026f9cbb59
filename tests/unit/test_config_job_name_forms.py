"""Every form in which sbatch takes a job name counts for the rule "the last job name must be %U".

sbatch parses its arguments with getopt_long: a long option may be shortened to any prefix that names no other
(sbatch has no other long option starting with ``j``), and short options may be run together (``-HJname``). Each
row below was checked with ``sbatch -v`` (Slurm 22.05), which prints the job name it would use. A template
with any of them used to pass, and then every job looked gone (endless unlock and relock).
"""

from __future__ import annotations

import pytest

from slurm_dispatch.config import settings_from_documents, template_problems
from slurm_dispatch.config.checks import job_names
from slurm_dispatch.errors import ConfigError
from slurm_dispatch.settings import Settings

RENAMING = [  # (the words, the index of the one that names the job)
    pytest.param(["--jo=other"], 0, id="long-prefix-joined"),
    pytest.param(["--job-na", "other"], 0, id="long-prefix-split"),
    pytest.param(["--j=other"], 0, id="one-letter-prefix"),
    pytest.param(["-HJother"], 0, id="short-cluster-joined"),
    pytest.param(["-vJ", "other"], 0, id="short-cluster-split"),
    pytest.param(["-k", "-Jother"], 1, id="after-an-optional-argument-option"),
]


@pytest.mark.parametrize(("args", "at"), RENAMING)
def test_sbatch_arguments_list_renaming_forms_are_startup_problems(args: list[str], at: int) -> None:
    settings = Settings(cluster_id="abcde", sbatch_arguments=("--job-name=%U", *args))
    problems = template_problems(settings)
    assert len(problems) == 1 and f"SbatchArgumentsList[{at + 1}]" in problems[0], problems
    assert "would rename the job" in problems[0]


@pytest.mark.parametrize(("args", "at"), RENAMING)
def test_gpu_list_renaming_forms_are_startup_problems(args: list[str], at: int) -> None:
    settings = Settings(cluster_id="abcde", sbatch_gpu_arguments=("--gpus=%G", *args))
    problems = template_problems(settings)
    assert len(problems) == 1 and f"SbatchGPUArgumentsList[{at + 1}]" in problems[0], problems


@pytest.mark.parametrize(("args", "at"), RENAMING)
def test_supervisor_arguments_renaming_forms_are_refused(args: list[str], at: int) -> None:
    with pytest.raises(ConfigError, match=rf"Limits.SupervisorSbatchArguments\[{at}\]: .* would rename the job"):
        settings_from_documents({"Clusters": {"zzzzz": {}}}, source="/etc/arvados/config.yml",
                                dispatch_document={"Limits": {"SupervisorSbatchArguments": args}},
                                dispatch_source="/etc/arvados/slurm-dispatch/slurm-dispatch.yml")


@pytest.mark.parametrize("args", [["--jo=%U"], ["-HJ%U"], ["--job-na", "%U"]])
def test_an_abbreviated_job_name_of_uuid_is_the_job_name(args: list[str]) -> None:
    assert template_problems(Settings(sbatch_arguments=(*args, "--mem=%M"))) == []


@pytest.mark.parametrize(("args", "why"), [
    (["--job-name=%U", "-oJob.out"], "o takes the rest of the word: the output file"),
    (["--job-name=%U", "-o", "-Jx"], "o takes the next word"),
    (["--job-name=%U", "-kJx"], "k takes the rest of the word (sbatch then refuses it, but names no job)"),
    (["--job-name=%U", "--jobs=2"], "not a prefix of job-name"),
    (["--job-name=%U", "--comment", "-Jx"], "--comment takes the next word"),
])
def test_words_that_only_look_like_a_job_name_are_not_one(args: list[str], why: str) -> None:
    assert job_names(args)[1:] == [], why
    assert template_problems(Settings(sbatch_arguments=tuple(args))) == [], why


def test_a_job_name_option_takes_the_next_word_as_its_value() -> None:
    assert job_names(["-J", "-Jx", "--jo=%U"]) == [(0, "-J -Jx", "-Jx"), (2, "--jo=%U", "%U")]


def test_legacy_sbatch_arguments_with_an_abbreviated_job_name_do_not_warn_it_is_missing() -> None:
    _, warnings = settings_from_documents({"Clusters": {"zzzzz": {}}}, source="/etc/arvados/config.yml",
                                          legacy_document={"SbatchArguments": ["--jo=%U", "--mem=%M", "-c%C",
                                                                               "--tmp=%T"]},
                                          legacy_source="/etc/old.yml")
    assert not [w for w in warnings if "lacks" in w], warnings
