"""An HTTP emulator of the Arvados API subset that dispatchers and crunch-run use.

See docs/sandbox-api.md. Modules: ``schema`` (columns, controller serialisation),
``filters``/``jsonb`` (list filters and orders), ``rules`` (state machine and field
rules), ``store`` (SQLite state), ``params`` (request parsing), ``endpoints``
(handlers), ``faults`` (fault injection), ``server`` (HTTP and control endpoints),
``tls`` (self-signed certificate).
"""

from slurm_dispatch.sandbox.api.server import EmulatorServer

__all__ = ["EmulatorServer"]
