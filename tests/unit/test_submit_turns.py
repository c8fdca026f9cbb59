"""SubmitTurns: at most N submissions at once, the waiting ones by want (highest first), no slot ever lost."""

from __future__ import annotations

import asyncio

import pytest

from slurm_dispatch.runner.turns import SubmitTurns, TurnKey


async def _settle() -> None:
    """Let every task that can run, run (the event loop is ours alone: no thread, no timer)."""
    for _ in range(20):
        await asyncio.sleep(0)


class _Line:
    """Tasks that each take a turn, note when they got it, and hold it until released."""

    def __init__(self, turns: SubmitTurns) -> None:
        self.turns = turns
        self.order: list[str] = []
        self.release: dict[str, asyncio.Event] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def come(self, key: TurnKey) -> None:
        name = key[1]
        self.release[name] = asyncio.Event()

        async def take() -> None:
            async with self.turns.turn(key):
                self.order.append(name)
                await self.release[name].wait()

        self.tasks[name] = asyncio.create_task(take())

    async def finish(self, name: str) -> None:
        self.release[name].set()
        await self.tasks[name]
        await _settle()


def test_the_highest_want_goes_first_even_for_the_free_slots_and_at_most_slots_at_once() -> None:
    async def main() -> None:
        line = _Line(SubmitTurns(2))
        for want, name in [(3, "c3"), (9, "c9"), (1, "c1"), (7, "c7"), (5, "c5")]:
            line.come((want, name))
        await _settle()
        assert line.order == ["c9", "c7"]  # all asked in the same round: the two highest take the two free slots
        assert line.turns.waiting == 3
        await line.finish("c9")
        assert line.order == ["c9", "c7", "c5"]  # the highest of those waiting
        await line.finish("c7")
        await line.finish("c5")
        assert line.order == ["c9", "c7", "c5", "c3", "c1"]
        await line.finish("c3")
        await line.finish("c1")
        assert line.turns.waiting == 0

    asyncio.run(main())


def test_equal_wants_go_by_name_descending_as_the_renice_order_does() -> None:
    async def main() -> None:
        line = _Line(SubmitTurns(1))
        line.come((5, "holder"))
        await _settle()  # in alone
        for name in ["b", "a", "c"]:
            line.come((5, name))
        await _settle()
        for name in ["holder", "c", "b"]:
            await line.finish(name)
        assert line.order == ["holder", "c", "b", "a"]

    asyncio.run(main())


def test_a_cancelled_waiter_is_skipped_and_no_slot_is_lost() -> None:
    async def main() -> None:
        line = _Line(SubmitTurns(1))
        line.come((1, "holder"))
        await _settle()  # in alone
        line.come((9, "gives-up"))
        line.come((2, "patient"))
        await _settle()
        line.tasks["gives-up"].cancel()
        await _settle()
        await line.finish("holder")
        assert line.order == ["holder", "patient"]
        await line.finish("patient")
        line.come((1, "later"))  # the one slot is free again: in at once
        await _settle()
        assert line.order[-1] == "later"

    asyncio.run(main())


def test_a_waiter_cancelled_just_after_it_was_handed_the_turn_passes_it_on() -> None:
    async def main() -> None:
        line = _Line(SubmitTurns(1))
        release = asyncio.Event()

        async def holder() -> None:
            async with line.turns.turn((1, "holder")):
                await release.wait()
            # The turn has just gone to "next" (the highest waiting), which has not run yet: cancel it in this very
            # step, as a shutdown could.
            line.tasks["next"].cancel()

        holding = asyncio.create_task(holder())
        await _settle()
        line.come((9, "next"))
        line.come((2, "after"))
        await _settle()
        assert line.turns.waiting == 2
        release.set()
        await holding
        await _settle()
        assert line.tasks["next"].cancelled()
        assert line.order == ["after"]  # "next" never ran its block; its turn went on
        await line.finish("after")
        line.come((1, "later"))  # and the one slot is free again
        await _settle()
        assert line.order == ["after", "later"]

    asyncio.run(main())


def test_an_error_in_the_block_passes_the_turn_on() -> None:
    async def main() -> None:
        turns = SubmitTurns(1)
        with pytest.raises(RuntimeError):
            async with turns.turn((1, "a")):
                raise RuntimeError("sbatch failed")
        async with turns.turn((1, "b")):  # would wait for ever if the slot had been lost
            assert turns.waiting == 0

    asyncio.run(main())


def test_no_slot_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="at least one slot"):
        SubmitTurns(0)
