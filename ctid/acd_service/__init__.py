"""The live ACD in ctid: the ACD core (ctid.acd) wired into the call model and the daemon.

- service.py: `AcdService`, the call model's routing service for "queue:NAME" targets:
  answers the caller, queues them with music and announcements, rings agents, bridges,
  handles ring-no-answer, wrap-up, overflow (voicemail, goodbye); it dispatches the call
  model's events, the timer tick and the CTI requests, and carries out the ACD's actions.
  It owns one collaborator per job:
  - callbacks.py: placing callbacks (the caller's release, the call back on a trunk).
  - supervision.py: supervisors' listen/whisper/barge in agents' calls (conferences).
  - transfer.py: transfers to an agent or a queue, agents' consultations of a queue
    (TRANSFER_IN, WITHDRAWN).
  - requests.py: the CTI AgentRequest actions (below).
  - phones.py: agents' phones in use outside the ACD, and the reconciler.
- persist.py: the state file (agents, callbacks, waiting callers across a restart).
- notifier.py: ACD actions -> CTI events (Queued, agent state events, QueueStatistics).
- metrics.py: Prometheus gauges and counters per queue.
- queue_log.py: the ACD's queue log to the storage write queue (table queue_log).
- audio.py: music on hold (generated at start) and position/wait announcements (Mandarin
  text-to-speech when espeak-ng is there, a tone pattern until then).
- settings.py: [acd], [[queue]] and [[agent]] in ctid.toml.
- bench.py: `python -m ctid.acd_service.bench`, ctid's cost per call with the live ACD.

CTI: Request.agent = AgentRequest(agent, action, device, reason):

  login        device: the extension to sit at (default: the agent's configured one);
               reason "not_ready" logs in not ready (default: ready)
  logout       reason: free text, logged
  ready        (from not ready, or ending wrap-up early; on a call: cancels a pending
               not ready)
  not_ready    reason: the reason code (default "break"); on a call it applies after
               the wrap-up
  force_state  reason: "ready" | "not_ready" | "logged_off", optionally ":why";
               device: who forces (logged as the supervisor)
  supervise    device: the supervisor's phone; reason: "listen" | "whisper" | "barge"
               (again with another mode switches it) | "stop"
  status       the agent's state in Reply.status; or device "queue:NAME": the queue's
               live figures

Errors come back as Reply.error naming what is wrong (unknown agent or queue, a state
change the agent state machine forbids, a device that is not an extension...). The CTI
server's roles and scopes apply first: an agent's key controls only its own agent ids
and devices, a supervisor's key the agents and devices of its scope.
"""


def __getattr__(name):          # lazy: ctid.config imports settings without the service
    if name in ("AcdService",):
        from .service import AcdService
        return AcdService
    raise AttributeError(name)


__all__ = ["AcdService"]
