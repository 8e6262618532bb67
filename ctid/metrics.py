"""ctid's Prometheus metrics, served on /metrics (127.0.0.1:9631 by default).

A registry per daemon instance (not the process-global one) so tests can run several.
Hot paths (events published) count into plain dicts and flush here once a second.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)


class CtidMetrics:
    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.calls = Gauge("hotline_ctid_calls", "Calls in progress by state", ["state"], registry=r)
        self.calls_completed = Counter("hotline_ctid_calls_completed",
                                       "Calls ended, by outcome", ["outcome"], registry=r)
        self.cti_clients = Gauge("hotline_ctid_cti_clients",
                                 "CTI clients connected (authenticated), by socket", ["socket"],
                                 registry=r)
        self.events = Counter("hotline_ctid_cti_events_published", "CTI events published",
                              ["event"], registry=r)
        self.last_seq = Gauge("hotline_ctid_cti_last_seq", "Last event seq published", registry=r)
        self.clients_behind = Gauge("hotline_ctid_cti_clients_behind",
                                    "CTI clients that asked for a replay or snapshot in the "
                                    "last 10 s (they had lost events)", registry=r)
        self.messages_lost = Counter("hotline_ctid_cti_messages_lost",
                                     "Events CTI clients reported missing (from Replay requests)",
                                     registry=r)
        self.replays = Counter("hotline_ctid_cti_replays", "Replay requests by result",
                               ["result"], registry=r)
        self.requests = Counter("hotline_ctid_cti_requests", "CTI requests by kind and result",
                                ["request", "result"], registry=r)
        self.request_seconds = Histogram("hotline_ctid_cti_request_seconds",
                                         "Time from a request's arrival to its reply",
                                         ["request"], buckets=LATENCY_BUCKETS, registry=r)
        self.rejected = Counter("hotline_ctid_cti_rejected_messages",
                                "Messages on the request socket rejected before handling",
                                ["reason"], registry=r)
        self.refused = Counter("hotline_ctid_cti_refused", "Requests refused by role or scope, "
                               "and connections refused by the ZAP handler", ["what"], registry=r)
        self.cardd_up = Gauge("hotline_ctid_cardd_up", "1 when the cardd node answers", ["node"],
                              registry=r)
        self.cardd_resyncs = Counter("hotline_ctid_cardd_resyncs",
                                     "Resynchronisations from a cardd node's Status",
                                     ["node", "reason"], registry=r)
        self.cardd_events = Counter("hotline_ctid_cardd_events", "Events received from cardd",
                                    ["node"], registry=r)
        self.cardd_commands = Counter("hotline_ctid_cardd_commands",
                                      "Commands sent to cardd, by result",
                                      ["node", "command", "result"], registry=r)
        self.cdrs = Counter("hotline_ctid_cdrs", "CDRs handed to storage", registry=r)
        self.loop_seconds = Histogram("hotline_ctid_loop_seconds",
                                      "Processing time of one pass of the main loop",
                                      buckets=LATENCY_BUCKETS, registry=r)

    def flush_events(self, counts: dict[str, int]) -> None:
        for name, n in counts.items():
            if n:
                self.events.labels(name).inc(n)
        counts.clear()

    def serve(self, listen: str):
        host, port = listen.rsplit(":", 1)
        return start_http_server(int(port), addr=host, registry=self.registry)
