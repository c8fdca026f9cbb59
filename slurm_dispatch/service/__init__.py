"""Process concerns around the dispatch loop, each in a module that knows nothing of dispatching.

- ``locks``: the local single-instance ``FileLock`` and the cluster-wide PostgreSQL ``AdvisoryLock`` (key 10005).
- ``notify``: sd_notify (READY/STOPPING/WATCHDOG/STATUS) without a systemd library.
- ``http``: the ``/_health/ping`` and ``/metrics`` endpoint on ``Services.DispatchSLURM.InternalURLs``.
- ``metrics``: ``Metrics``, the only owner of prometheus_client objects.
- ``logging_setup``: ``SystemLogs.LogLevel``/``Format`` and the secret-redacting filter.

The daemon wires these around the Dispatcher; see docs/operations.md for how they behave in production.
"""
