"""cardd's Prometheus metrics, served on /metrics (127.0.0.1:9630 by default).

A registry per daemon instance (not the process-global one) so tests can run several.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

TICK_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1)


class CarddMetrics:
    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.channels = Gauge("hotline_cardd_channels", "Channels by state", ["state"], registry=r)
        self.span_alarms = Gauge("hotline_cardd_span_alarms",
                                 "Span alarm bits (DAHDI_ALARM_*), 0 when clear", ["span"], registry=r)
        self.tick_seconds = Histogram("hotline_cardd_tick_seconds",
                                      "Processing time of one audio tick", buckets=TICK_BUCKETS,
                                      registry=r)
        self.late_ticks = Counter("hotline_cardd_late_ticks",
                                  "Ticks whose processing took longer than the tick", registry=r)
        self.commands = Counter("hotline_cardd_commands", "Commands handled",
                                ["command", "result"], registry=r)
        self.rejected = Counter("hotline_cardd_rejected_messages",
                                "Messages on the command socket rejected", ["reason"], registry=r)
        self.events = Counter("hotline_cardd_events", "Events published", ["kind"], registry=r)
        self.channel_faults = Counter("hotline_cardd_channel_faults",
                                      "Errors contained to one channel", ["channel"], registry=r)

    def serve(self, listen: str):
        host, port = listen.rsplit(":", 1)
        return start_http_server(int(port), addr=host, registry=self.registry)
