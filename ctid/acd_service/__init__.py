"""The live ACD in ctid: the ACD core (ctid.acd) wired into the call model and the daemon.

- service.py: `AcdService`, the call model's routing service for "queue:NAME" targets:
  answers the caller, queues them with music and announcements, rings agents, bridges,
  handles ring-no-answer, wrap-up, transfers, overflow, supervisors' listen/whisper/barge,
  the reconciler, and the CTI AgentRequest actions.
- notifier.py: ACD actions -> CTI events (Queued, agent state events, QueueStatistics).
- metrics.py: Prometheus gauges and counters per queue.
- queue_log.py: the ACD's queue log to the storage write queue (table queue_log).
- audio.py: music on hold (generated at start) and position/wait announcements (Mandarin
  text-to-speech when espeak-ng is there, a tone pattern until then).
- settings.py: [acd], [[queue]] and [[agent]] in ctid.toml.
"""


def __getattr__(name):          # lazy: ctid.config imports settings without the service
    if name in ("AcdService",):
        from .service import AcdService
        return AcdService
    raise AttributeError(name)


__all__ = ["AcdService"]
