"""Running the dispatch loop in a thread of its own, against the sandbox: for the demo and the tests.

The service runs ``DispatchLoop`` on the main thread's event loop; the demo and the end-to-end tests want to
drive the emulator and Slurm from their own thread meanwhile, and stop the loop as SIGTERM would.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from slurm_dispatch.assemble import DispatchLoop
from slurm_dispatch.errors import DispatchError
from slurm_dispatch.model import MiB
from slurm_dispatch.settings import DEFAULT_SBATCH_ARGUMENTS, Settings


def crunch_run_stub_path() -> str:
    """Return the absolute path of the installed crunch-run stand-in (``crunch-run-stub``).

    Raises:
        DispatchError: it is not installed.
    """
    beside = Path(sys.executable).with_name("crunch-run-stub")
    found = str(beside) if beside.exists() else shutil.which("crunch-run-stub")
    if not found:
        raise DispatchError("crunch-run-stub is not installed; reinstall slurm-dispatch (pip install .)")
    return found


def sandbox_settings(*, root_token: str, base_url: str, output_dir: Path, poll_interval: float) -> Settings:
    """Return Settings for a dispatcher between the emulator and the Slurm test cluster. Pure but for the stub's path.

    The default sbatch template plus ``--output=<output_dir>/%j.out`` (so each job's output is easy to find),
    the crunch-run stand-in as CrunchRunCommand, 50 MiB of ReserveExtraRAM (the test nodes are small), and
    TLS.Insecure, since the emulator's certificate is self-signed.
    """
    return Settings(
        cluster_id="zzzzz",
        system_root_token=root_token,
        controller_url=base_url,
        tls_insecure=True,
        poll_interval=poll_interval,
        batch_size=100,
        reserve_extra_ram=50 * MiB,
        crunch_run_command=crunch_run_stub_path(),
        sbatch_arguments=(*DEFAULT_SBATCH_ARGUMENTS, f"--output={output_dir}/%%j.out"),
        log_format="text",
    )


class BackgroundDispatcher:
    """A DispatchLoop running on an event loop in a daemon thread; ``stop()`` shuts it down as SIGTERM would."""

    def __init__(self, settings: Settings, base_env: Mapping[str, str], **kwargs: Any) -> None:
        """Prepare; nothing runs until ``start()``. ``kwargs`` go to ``DispatchLoop``."""
        self.settings = settings
        self.base_env = dict(base_env)
        self.kwargs = kwargs
        self.loop: asyncio.AbstractEventLoop | None = None
        self.dispatch: DispatchLoop | None = None
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def start(self) -> BackgroundDispatcher:
        """Start the thread and wait until the loop exists (it then polls on its own). Blocks briefly.

        Raises:
            DispatchError: the loop did not start within 30 s.
        """
        self._thread = threading.Thread(target=self._main, name="dispatcher", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise DispatchError("the dispatch loop did not start within 30 s")
        return self

    @property
    def running(self) -> bool:
        """True while the loop's thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def _main(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            self.dispatch = DispatchLoop(
                self.settings, base_env=self.base_env, **self.kwargs
            )
            self._ready.set()
            await self.dispatch.run()

        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - kept for stop() to raise in the caller's thread
            self.error = exc
        finally:
            self._ready.set()

    def stop(self, timeout: float = 30) -> None:
        """Shut the loop down (Slurm jobs keep running) and wait for its thread. Blocks.

        Raises:
            DispatchError: the thread did not end within ``timeout``.
            BaseException: whatever the loop raised.
        """
        loop, dispatch = self.loop, self.dispatch
        if loop is not None and dispatch is not None and self.running:
            loop.call_soon_threadsafe(dispatch.shutdown)
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise DispatchError(f"the dispatch loop did not stop within {timeout:.0f} s")
        if self.error is not None:
            raise self.error
