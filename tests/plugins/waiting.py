"""The one way a test waits for a condition: poll a predicate until it holds, with a deadline.

Every test that waits for something outside its own thread (a Slurm job, a dispatcher tick, a line in a service's
log, a lock attempt in another thread) calls ``wait_until`` from here, so that there is one rule for waiting: poll,
never a bare sleep, and fail the test with what was awaited and for how long.

Loaded like every module under tests/plugins/ (see tests/conftest.py); it holds no fixtures. Import it as
``from plugins.waiting import wait_until``.

PYTEST_DONT_REWRITE: plugin modules that sort before this one (slurm_cluster, two_clusters) import it before pytest
loads it as a plugin, too late for assert rewriting, which it does not need (it has no assert); this marker keeps
pytest from warning about that on every run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class WaitTimeout(AssertionError):
    """What ``wait_until`` raises when the condition did not come in time: a test failure (an AssertionError), and
    one that a caller may catch when running out of time is an outcome it handles (the fault suite does)."""


DEFAULT_TIMEOUT_S = 60.0
"""How long ``wait_until`` waits unless told otherwise."""

DEFAULT_EVERY_S = 0.1
"""How often ``wait_until`` calls the predicate unless told otherwise."""


def wait_until(
    predicate: Callable[[], Any], *, what: str, timeout: float = DEFAULT_TIMEOUT_S, every: float = DEFAULT_EVERY_S
) -> Any:
    """Call ``predicate()`` every ``every`` seconds until it returns a truthy value, and return that value.

    The value is returned, not just True, so that a test can wait for a thing and use it in one step
    (``(job,) = wait_until(lambda: jobs_named(uuid), what="the job")``). The predicate is called at once, then
    after each ``every`` seconds; once ``timeout`` seconds have passed and it still returns a falsy value, the test
    fails (``WaitTimeout``) with a message naming ``what``, the timeout and that last value. Exceptions from the predicate are not
    caught: they end the wait and the test at once, as they would outside a wait.

    ``every`` is a parameter because callers need different rates: 0.1 s by default, 0.2 s for the Slurm cluster
    fixtures' ``wait_for`` (a Slurm command per call), 0.01 s for in-process conditions such as a lock attempt.

    Typed ``Any``, not with a type variable, because predicates are often ``lambda: condition and value``, whose
    inferred type (``bool | value``) would make every use of the result need a cast.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise WaitTimeout(f"timed out after {timeout:g} s waiting for {what} (last value: {value!r})")
        time.sleep(every)
