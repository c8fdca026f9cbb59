"""template_problems / startup_problems: sbatch templates the service refuses.

The template rules are services/crunch-dispatch-slurm/crunch-dispatch-slurm.go: sbatchArgs.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from slurm_dispatch.config import startup_problems, template_problems
from slurm_dispatch.settings import DEFAULT_SBATCH_ARGUMENTS, Settings

API = Settings(system_root_token="t" * 32, controller_url="https://ctrl.example/")
"""A token and a controller, so that startup_problems reports only what a test is about."""


@pytest.mark.parametrize(
    ("sbatch", "gpu"),
    [
        pytest.param(DEFAULT_SBATCH_ARGUMENTS, ("--gpus=%G",), id="defaults"),
        pytest.param(("--job-name=%U", "--time=%W", "--constraint=%I", "--comment=100%%"), (), id="all-tokens"),
        pytest.param(("--job-name=%U", "--comment=50%"), ("--gres=gpu:%G",), id="lone-trailing-percent"),
        pytest.param(("-J", "%U"), (), id="short-job-name-split"),
        pytest.param(("--job-name", "%U"), (), id="long-job-name-split"),
        pytest.param(("-J%U",), (), id="short-job-name-joined"),
        pytest.param(("--job-name=%U", "--comment=%%X"), (), id="escaped-percent-then-letter"),
        pytest.param(("--job-name=%U", "--comment=a%\nb"), (), id="percent-newline-like-go-regexp"),
        pytest.param(("--job-name=first", "--job-name=%U"), ("-J", "%U"), id="last-job-name-is-%U"),
    ],
)
def test_good_templates_have_no_problems(sbatch: tuple[str, ...], gpu: tuple[str, ...]) -> None:
    settings = Settings(sbatch_arguments=sbatch, sbatch_gpu_arguments=gpu)
    assert template_problems(settings) == []


@pytest.mark.parametrize(
    ("sbatch", "gpu", "fragments"),
    [
        pytest.param(("--job-name=%U", "--mem=%X"), (), ["SbatchArgumentsList[1]", "'--mem=%X'", "'%X'"],
                     id="unknown-token"),
        pytest.param(("--job-name=%U", "--comment=% x"), (), ["SbatchArgumentsList[1]", "'% '"],
                     id="percent-space"),
        pytest.param(("--job-name=%U", "--mem=%m"), (), ["'%m'"], id="lowercase-token"),
        pytest.param(("--job-name=%U",), ("--gpus=%g",), ["SbatchGPUArgumentsList[0]", "'%g'"], id="gpu-list"),
        pytest.param(("--mem=%M",), (), ["SbatchArgumentsList lacks --job-name=%U", "relocked"], id="no-job-name"),
        pytest.param(("--job-name=%C",), (), ["lacks --job-name=%U"], id="job-name-not-uuid"),
        pytest.param(("--job-name=x%U",), (), ["lacks --job-name=%U"], id="job-name-prefixed"),
        pytest.param(("--job-name=%U", "--mem=%M", "-J", "other"), (),
                     ["SbatchArgumentsList[2] '-J other' would rename the job: sbatch takes the last --job-name"],
                     id="renamed-after-%U"),
        pytest.param(("--job-name=%U",), ("--gpus=%G", "--job-name=gpu"),
                     ["SbatchGPUArgumentsList[1] '--job-name=gpu' would rename the job", "relocked"],
                     id="renamed-by-gpu-list"),
        pytest.param(("-J%U", "-Jx"), (), ["SbatchArgumentsList[1] '-Jx' would rename the job"], id="renamed-joined"),
    ],
)
def test_bad_templates_are_reported(sbatch: tuple[str, ...], gpu: tuple[str, ...], fragments: list[str]) -> None:
    problems = template_problems(Settings(cluster_id="abcde", sbatch_arguments=sbatch, sbatch_gpu_arguments=gpu))
    assert len(problems) == 1, problems
    for fragment in fragments:
        assert fragment in problems[0]
    assert problems[0].startswith("Clusters.abcde.Containers.SLURM.")


def test_every_problem_is_reported() -> None:
    settings = Settings(sbatch_arguments=("--account=%Q", "--begin=%Z"), sbatch_gpu_arguments=("--comment=%Y",))
    assert len(template_problems(settings)) == 4


def test_startup_problems_include_missing_internal_urls() -> None:
    problems = startup_problems(API)
    assert len(problems) == 1
    assert "Services.DispatchSLURM.InternalURLs is empty" in problems[0]
    assert startup_problems(replace(API, dispatch_internal_urls=("http://localhost:9006",))) == []


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        pytest.param("http://localhost:9006", True, id="http with port"),
        pytest.param("http://0.0.0.0:9006/", True, id="all addresses"),
        pytest.param("https://localhost:9006", False, id="https is not served"),
        pytest.param("http://localhost/", False, id="no port"),
    ],
)
def test_startup_problems_check_internal_urls(url: str, ok: bool) -> None:
    problems = startup_problems(replace(API, dispatch_internal_urls=(url,)))
    assert (problems == []) == ok, problems
    if not ok:
        assert "InternalURLs" in problems[0] and url in problems[0]
