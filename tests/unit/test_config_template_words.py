"""Template words sbatch would misread are refused at startup, one line each (``config.checks.misread_words``).

The dispatcher sends sbatch the template, then arguments of its own, and the job's script on stdin. Each case
below was read by the real sbatch 22.05 as the comment says (tests/integration/test_sbatch_options_real.py
checks the reader against it): a stray word became the script's path (sbatch looked ``script`` up on PATH and
ran /usr/bin/script), ``--`` turned the dispatcher's own arguments into the script's, and so on.
"""

from __future__ import annotations

import pytest

from slurm_dispatch.config import settings_from_documents, template_problems
from slurm_dispatch.errors import ConfigError
from slurm_dispatch.settings import Settings


@pytest.mark.parametrize(
    ("words", "at", "says"),
    [
        pytest.param(["script"], 0, "'script' is not an sbatch option: sbatch would take it as the job script's path",
                     id="stray-word"),
        pytest.param(["--nice", "5"], 1, "'--nice' takes its value only joined to it ('--nice=5'): sbatch would "
                     "read '5' as the job script's path", id="optional-value-not-joined"),
        pytest.param(["--nice", "-10"], 1, "'--nice' takes its value only joined to it ('--nice=-10'): sbatch "
                     "would read '-10' as an option, and fail", id="negative-optional-value-not-joined"),
        pytest.param(["-k", "x"], 1, "'-k' takes its value only joined to it ('-kx')", id="short-optional-value"),
        pytest.param(["-Z9"], 0, "sbatch has no option -Z", id="one-line-for-a-word"),
        pytest.param(["--exc=c9"], 0, "'--exc=c9': --exc could be any of --exclude, --exclusive; every sbatch would "
                     "fail", id="ambiguous-on-every-release"),
        pytest.param(["--", "--mem=5"], 0, "'--' ends sbatch's options", id="end-of-options"),
        pytest.param([":", "--mem=5"], 0, "heterogeneous job", id="het-job-separator"),
        pytest.param(["--partition"], 0, "'--partition' takes a value and none follows it", id="missing-value"),
        pytest.param(["--no-requeue=yes"], 0, "--no-requeue takes no value", id="needless-value"),
        pytest.param(["-Z"], 0, "sbatch has no option -Z", id="no-such-short-option"),
    ],
)
def test_words_sbatch_would_misread_are_startup_problems(words: list[str], at: int, says: str) -> None:
    settings = Settings(cluster_id="abcde", sbatch_arguments=("--job-name=%U", "--mem=%M", *words))
    problems = template_problems(settings)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"Clusters.abcde.Containers.SLURM.SbatchArgumentsList[{at + 2}] '"), problems
    assert says in problems[0], problems


@pytest.mark.parametrize(
    "words",
    [
        pytest.param(["--time", "%W", "--partition", "%P"], id="values-as-next-words"),
        pytest.param(["-t", "%W", "-p%P", "-HJ%U"], id="short-options"),
        pytest.param(["--x11=batch", "--my-spank-option"], id="spank-plugin-options"),  # only the nodes know them
        pytest.param(["--container-image", "arvados/jobs:latest", "--container-mounts=/tmp:/tmp"],
                     id="spank-plugin-option-with-its-value-as-the-next-word"),
        pytest.param(["--resources", "gpu:1"], id="an-option-of-a-newer-release"),
        pytest.param(["--res", "r1", "--ext", "1"], id="prefixes-ambiguous-only-across-releases"),
        pytest.param(["--exclusive", "--comment", "-J not a name"], id="a-value-that-looks-like-an-option"),
    ],
)
def test_templates_sbatch_reads_as_options_pass(words: list[str]) -> None:
    assert template_problems(Settings(cluster_id="abcde", sbatch_arguments=("--job-name=%U", *words))) == []


def test_the_gpu_list_is_checked_too() -> None:
    problems = template_problems(Settings(cluster_id="abcde", sbatch_gpu_arguments=("--gpus=%G", "gpu")))
    assert problems == [("Clusters.abcde.Containers.SLURM.SbatchGPUArgumentsList[1] 'gpu' is not an sbatch option: "
                        "sbatch would take it as the job script's path instead of reading crunch-run's script on "
                        "stdin")]


def test_the_supervisor_arguments_are_checked_too() -> None:
    document = {"Limits": {"SupervisorSbatchArguments": ["--partition", "workflows", "workflows"]}}
    with pytest.raises(ConfigError) as info:
        settings_from_documents({"Clusters": {"zzzzz": {}}}, source="c.yml", dispatch_document=document,
                                dispatch_source="d.yml")
    assert "Limits.SupervisorSbatchArguments[2]" in str(info.value)
    assert "'workflows' is not an sbatch option" in str(info.value)
