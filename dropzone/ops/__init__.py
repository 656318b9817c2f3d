"""Operations: Prometheus metrics, the ``/healthz`` verdict, the HTTP endpoint, systemd notify.

The pieces live in small modules; import them from here:

- :mod:`dropzone.ops.metrics`: :class:`Metrics` (a dedicated registry, ``dropzone_*`` series)
  and :func:`observe_ledger` (ledger gauges after a poll);
- :mod:`dropzone.ops.health`: :class:`Heartbeat` (the one record of progress, read by the
  watchdog ping and ``/healthz``) and the pure :func:`health_report`;
- :mod:`dropzone.ops.http`: :class:`OpsServer` serving ``/metrics`` and ``/healthz``;
- :mod:`dropzone.ops.systemd`: :class:`SystemdNotifier` and :func:`watchdog_interval_s`;
- :mod:`dropzone.ops.events`: :class:`DaemonOps`, the daemon's events fed to all of the above.

Wiring, in the daemon's terms::

    metrics = Metrics(watches)                   # ArkClient(observer=metrics.api_call)
    heartbeat = Heartbeat(watchdog_interval_s=watchdog_interval_s(env), watches=watches)
    notifier = SystemdNotifier(env)
    probe = health_probe(heartbeat=heartbeat, poll_interval_s=..., started_at=time.time(),
                         due=..., ledger_writable=...)
    with OpsServer(listen, metrics, probe):
        notifier.ready()
        # each loop turn: heartbeat.pulse(notifier)
        # each poll:      heartbeat.polled(watch, t); metrics.poll_completed(watch, d, t);
        #                 observe_ledger(metrics, ledger, watch, now)
        notifier.stopping()
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dropzone.ops.health import (
        STALE_AFTER_INTERVALS,
        HealthBody,
        Heartbeat,
        WatchHealth,
        health_probe,
        health_report,
    )
    from dropzone.ops.http import ListenError, OpsServer
    from dropzone.ops.metrics import (
        SUBMISSION_OUTCOMES,
        Metrics,
        SubmissionOutcome,
        observe_ledger,
        submission_outcome,
    )
    from dropzone.ops.systemd import SystemdNotifier, notify_address, watchdog_interval_s

# Imported when first asked for: `run --once` counts its calls in Metrics but serves no
# /metrics, pings no systemd and keeps no heartbeat, and should not pay for their modules
# (the HTTP server's among them) at start (issue 17).
_LAZY = {
    "STALE_AFTER_INTERVALS": "dropzone.ops.health",
    "HealthBody": "dropzone.ops.health",
    "Heartbeat": "dropzone.ops.health",
    "WatchHealth": "dropzone.ops.health",
    "health_probe": "dropzone.ops.health",
    "health_report": "dropzone.ops.health",
    "ListenError": "dropzone.ops.http",
    "OpsServer": "dropzone.ops.http",
    "SUBMISSION_OUTCOMES": "dropzone.ops.metrics",
    "Metrics": "dropzone.ops.metrics",
    "SubmissionOutcome": "dropzone.ops.metrics",
    "observe_ledger": "dropzone.ops.metrics",
    "submission_outcome": "dropzone.ops.metrics",
    "SystemdNotifier": "dropzone.ops.systemd",
    "notify_address": "dropzone.ops.systemd",
    "watchdog_interval_s": "dropzone.ops.systemd",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "STALE_AFTER_INTERVALS",
    "SUBMISSION_OUTCOMES",
    "HealthBody",
    "Heartbeat",
    "ListenError",
    "Metrics",
    "OpsServer",
    "SubmissionOutcome",
    "SystemdNotifier",
    "WatchHealth",
    "health_probe",
    "health_report",
    "notify_address",
    "observe_ledger",
    "submission_outcome",
    "watchdog_interval_s",
]
