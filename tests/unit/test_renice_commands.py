"""The renice plan as commands: by job id, one command per nice value, by name only without a plain id. Pure."""

from __future__ import annotations

from slurm_dispatch.model import SlurmJob
from slurm_dispatch.slurm.priority import Renice, renice_commands


def _jobs(**ids: str) -> dict[str, SlurmJob]:
    return {name: SlurmJob(name=name, nice=0, slurm_priority=1, state="PENDING", reason="None", job_id=job_id)
            for name, job_id in ids.items()}


def test_jobs_that_get_the_same_nice_share_one_command_in_the_plan_s_order() -> None:
    jobs = _jobs(a="11", b="12", c="13", d="14")
    plan = [("a", 0), ("b", 10), ("c", 0), ("d", 10)]
    assert renice_commands(plan, jobs) == [Renice(nice=0, job_ids=("11", "13")), Renice(nice=10, job_ids=("12", "14"))]


def test_a_job_without_a_plain_id_is_reniced_by_name_in_its_place() -> None:
    jobs = _jobs(a="11", b="", c="7_2", d="12")
    plan = [("a", 5), ("b", 5), ("c", 5), ("d", 5), ("gone", 5)]
    assert renice_commands(plan, jobs) == [
        Renice(nice=5, job_ids=("11", "12")),
        Renice(nice=5, name="b"),
        Renice(nice=5, name="c"),
        Renice(nice=5, name="gone"),
    ]


def test_a_long_list_is_split_and_an_empty_plan_is_no_command() -> None:
    jobs = _jobs(**{f"j{i}": str(100 + i) for i in range(5)})
    plan = [(f"j{i}", 3) for i in range(5)]
    assert [c.job_ids for c in renice_commands(plan, jobs, per_command=2)] == [
        ("100", "101"), ("102", "103"), ("104",)]
    assert renice_commands([], jobs) == []
