"""ctid: the CTI daemon (`ctid --config etc/ctid.toml`).

One loop: events from every cardd node (each through its CarddLink, which keeps them in
order and resynchronises from cardd's Status when it must), CTI requests, and a timer tick
every 100 ms, all drive the call model; what the model produces is carried out here:
CSTA events published (with seq and epoch), channel commands sent to cardd (error replies
come back as failures the model hears about), CDRs handed to the storage queue (which never
blocks). Metrics on 127.0.0.1:9631.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time

import zmq

from ctid.cardd_link import CarddLink, failure_event, reconcile
from ctid.cti.auth import AuditLog
from ctid.cti.server import CtiServer, CtiSettings
from ctid.metrics import CtidMetrics
from ctid.model.callmodel import CallModel, Out
from ctid.model.calls import ConnState
from hotline_proto import cti_pb2

log = logging.getLogger("ctid")

TICK_S = 0.1


def call_state(call) -> str:
    """One word for a call's progress, for the calls-by-state gauge."""
    states = {c.state for c in call.connections.values() if c.state != ConnState.NULL}
    for s in (ConnState.HELD, ConnState.CONNECTED, ConnState.ALERTING, ConnState.QUEUED,
              ConnState.INITIATED, ConnState.FAILED):
        if s in states:
            return s.value
    return "clearing"


class ModelService:
    """The CTI server's view of the call model. `carry_out(out, now)` sends the commands and
    CDRs of a request and returns its events; `status()` adds the daemon's own counts."""

    def __init__(self, model: CallModel, carry_out=None, status=None):
        self.model = model
        self.carry_out = carry_out or (lambda out, now: list(out.events))
        self.extra_status = status or (lambda: {})

    def handle(self, req: cti_pb2.Request, now: float):
        reply, out = self.model.request(req, now)
        return reply, self.carry_out(out, now)

    def snapshot(self):
        return self.model.snapshot()

    def call_devices(self, call_id: str) -> list[str] | None:
        call = self.model.calls.get(call_id)
        if call is None:
            return None
        return [d for d, c in call.connections.items() if c.state != ConnState.NULL]

    def agent_queues(self, agent_id: str) -> tuple[str, ...]:
        """The ACD queues an agent is a member of (() without an ACD): CTI queue scopes."""
        acd = self.model.services.get("queue")
        return acd.agent_queues(agent_id) if hasattr(acd, "agent_queues") else ()

    def agent_phones(self) -> dict[str, tuple[str, ...]]:
        """Each ACD agent's phones ({} without an ACD): what a queue-scoped Snapshot shows."""
        acd = self.model.services.get("queue")
        return acd.agent_phones() if hasattr(acd, "agent_phones") else {}

    def status(self) -> dict[str, str]:
        m = self.model
        st = {"calls": str(len(m.calls)), "devices": str(len(m.devices)),
              "devices_in_service": str(sum(1 for x in m.devices.values() if x.in_service))}
        st.update(self.extra_status())
        return st


class Ctid:
    def __init__(self, cfg, *, ctx: zmq.Context | None = None, store=None, clock=time.time):
        self.cfg = cfg
        self.ctx = ctx or zmq.Context.instance()
        self.store = store
        self.clock = clock
        self.metrics = CtidMetrics()
        self.model = CallModel(cfg.devices(), cfg.dialplan(), tz=cfg.tz)
        from ctid.acd_service import AcdService       # the queues: a routing service
        self.acd = AcdService.from_config(cfg, store=store, registry=self.metrics.registry)
        if self.acd is not None:
            self.acd.attach(self.model)
            # the ACD starts (restores, offers) once each cardd node is resynchronised
            self.acd.in_step = lambda node: node in self.links and not self.links[node].seq.syncing
        self.ivr = None
        if cfg.ivr is not None:                       # "ivr:FLOW" targets; the model's tick
            import ivr.ctid_service                   # drives the IVR's timers
            self.ivr = ivr.ctid_service.from_settings(cfg.ivr, cfg.ctid.run_dir, store)
            self.model.add_service("ivr", self.ivr)
        self.links: dict[str, CarddLink] = {}
        self.server: CtiServer | None = None
        self.running = False
        self.next_tick = 0.0
        self.next_gauges = 0.0
        self.outcomes: dict[str, int] = {}
        self._cached_poller: zmq.Poller | None = None
        self._unpublished: list[cti_pb2.Event] = []

    # ---- start-up ---------------------------------------------------------------------
    def open(self) -> "Ctid":
        cfg = self.cfg
        run_dir = cfg.ctid.run_dir
        os.makedirs(run_dir, exist_ok=True)
        settings = CtiSettings(events=cfg.cti.events, requests=cfg.cti.requests,
                               retain=cfg.cti.retain, heartbeat_s=cfg.cti.heartbeat_ms / 1000,
                               server_key=cfg.cti.server_key or None, keys=cfg.cti.keys or None)
        audit = AuditLog(os.path.join(run_dir, "cti-audit.log"), store=self.store)
        service = ModelService(self.model, self.carry_out, self.status)
        self.server = CtiServer(self.ctx, settings, service, metrics=self.metrics,
                                audit=audit, clock=self.clock).open()
        now = self.clock()
        for node in cfg.cardd:
            link = CarddLink(self.ctx, node.node, node.events, node.commands)
            self.links[node.node] = link
            link.start(now)
        self.next_tick = now + TICK_S
        log.info("CTI epoch %s: events %s, requests %s (%s)", self.server.epoch, settings.events,
                 settings.requests, "CURVE" if self.server.curve else "NO SECURITY")
        return self

    def status(self) -> dict[str, str]:
        st = {"name": self.cfg.ctid.name}
        for link in self.links.values():
            st[f"cardd.{link.node}"] = ("syncing" if link.seq.syncing else "up") if link.up else "down"
        if self.store is not None:
            try:
                st["db_pending"] = str(self.store.pending())
            except Exception:
                st["db_pending"] = "?"
        for outcome, n in sorted(self.outcomes.items()):
            st[f"calls_ended.{outcome}"] = str(n)
        if self.acd is not None:
            st.update(self.acd.status())
        return st

    # ---- carrying out the model's output --------------------------------------------------
    def carry_out(self, out: Out, now: float) -> list[cti_pb2.Event]:
        """Send commands and CDRs; returns the events (the caller publishes them, so a
        request's events go out before its reply)."""
        events = list(out.events)
        work = [out]
        while work:
            o = work.pop(0)
            for node, cmd in o.commands:
                link = self.links.get(node)
                if link is None:
                    log.error("command for unknown cardd node %r dropped", node)
                    continue
                self.metrics.cardd_commands.labels(node, cmd.WhichOneof("kind"), "sent").inc()
                for failed in link.send(cmd, now):
                    more = self._failed(node, failed[1], failed[2], now)
                    if more is not None:
                        events += more.events
                        work.append(Out(commands=more.commands, cdrs=more.cdrs))
            for cdr in o.cdrs:
                self._cdr(cdr)
        return events

    def dispatch(self, out: Out, now: float) -> None:
        """Carry out now; the events wait for flush(), so that everything one pass of the
        loop produced goes out in one batch (one message per subscriber, not one per event)."""
        self._unpublished += self.carry_out(out, now)

    def flush(self, now: float) -> None:
        if self._unpublished:
            events, self._unpublished = self._unpublished, []
            self.server.publish(events, now)

    def _cdr(self, cdr: dict) -> None:
        outcome = cdr.get("outcome") or "unknown"
        self.metrics.calls_completed.labels(outcome).inc()
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        if self.store is None:
            return
        try:
            self.store.submit_cdr(cdr)
            self.metrics.cdrs.inc()
        except Exception as e:          # a record storage refuses: logged, the call goes on
            log.error("CDR for %s not stored: %s", cdr.get("call_id"), e)

    def _failed(self, node: str, cmd, error: str, now: float) -> Out | None:
        kind = cmd.WhichOneof("kind")
        self.metrics.cardd_commands.labels(node, kind, "error").inc()
        log.warning("cardd %s: %s on channel %d failed: %s", node, kind, cmd.channel, error)
        ev = failure_event(cmd, error)
        if ev is None:
            return None
        return self.model.channel_event(node, ev, now)

    # ---- the loop -----------------------------------------------------------------------
    def step(self, timeout_s: float = TICK_S) -> None:
        poller = self._poller()
        now = self.clock()
        wait = max(0.0, min(timeout_s, self.next_tick - now))
        poller.poll(int(wait * 1000))
        started = time.perf_counter()
        now = self.clock()
        for node, link in self.links.items():
            items = link.poll(now)
            for item in items:
                self._link_item(node, link, item, now)
            self.metrics.cardd_up.labels(node).set(1 if link.up else 0)
        self.flush(now)                 # before requests: their events come after, in seq order
        self.server.process(now)
        if now >= self.next_tick:
            self.dispatch(self.model.tick(now), now)
            self.next_tick = max(self.next_tick + TICK_S, now)
        self.flush(now)
        if now >= self.next_gauges:
            self._gauges()
            self.next_gauges = now + 1.0
        self.metrics.loop_seconds.observe(time.perf_counter() - started)

    def _poller(self) -> zmq.Poller:
        if self._cached_poller is None:
            p = zmq.Poller()
            for sock in self.server.sockets:
                p.register(sock, zmq.POLLIN)
            for link in self.links.values():
                for sock in link.sockets:
                    p.register(sock, zmq.POLLIN)
            self._cached_poller = p
        return self._cached_poller

    def _link_item(self, node: str, link: CarddLink, item: tuple, now: float) -> None:
        what = item[0]
        try:
            if what == "event":
                self.metrics.cardd_events.labels(node).inc()
                self.dispatch(self.model.channel_event(node, item[1], now), now)
            elif what == "resync":
                reply, reason = item[1], item[2]
                self.metrics.cardd_resyncs.labels(node, reason).inc()
                before = len(self.model.calls)
                self.dispatch(reconcile(self.model, node, reply, now), now)
                log.info("cardd %s: resynchronised (%s) at its seq %d: %d channels, calls %d -> %d",
                         node, reason, reply.seq, len(reply.channels), before, len(self.model.calls))
            elif what == "failed":
                out = self._failed(node, item[1], item[2], now)
                if out is not None:
                    self.dispatch(out, now)
        except Exception:           # a fault in the model for one event must not stop ctid
            log.exception("cardd %s: fault handling %s", node, what)

    def _gauges(self) -> None:
        counts: dict[str, int] = {}
        for call in self.model.calls.values():
            s = call_state(call)
            counts[s] = counts.get(s, 0) + 1
        for s in ("initiated", "alerting", "connected", "held", "queued", "failed", "clearing"):
            self.metrics.calls.labels(s).set(counts.get(s, 0))

    def run(self) -> None:
        self.running = True
        while self.running:
            self.step()

    def close(self) -> None:
        if self.acd is not None:
            self.acd.close()
        if self.ivr is not None:
            self.ivr.svc.close()
        for link in self.links.values():
            link.close()
        if self.server is not None:
            self.server.close()


def main(argv: list[str] | None = None) -> int:
    from ctid.config import ConfigError, load_ctid_config

    p = argparse.ArgumentParser(prog="ctid", description="Hotline CTI daemon")
    p.add_argument("--config", default="etc/ctid.toml", help="ctid.toml (default: %(default)s)")
    p.add_argument("--check", action="store_true", help="check the configuration and exit")
    p.add_argument("--no-metrics", action="store_true", help="do not serve /metrics")
    p.add_argument("--log-level", default=os.environ.get("CTID_LOG", "INFO"))
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s ctid %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_ctid_config(args.config)
    except ConfigError as e:
        print(f"ctid: configuration refused:\n{e}", file=sys.stderr)
        return 2
    if args.check:
        print(f"{args.config}: ok ({len(cfg.cardd)} cardd nodes, {len(cfg.extensions)} "
              f"extensions, {len(cfg.trunk_groups)} trunk groups, {len(cfg.routes)} routes)")
        return 0
    os.makedirs(cfg.ctid.run_dir, exist_ok=True)
    from ctid.storage import Store
    try:
        store = Store(cfg.database.url, spool_dir=cfg.database.spool_path(cfg.ctid.run_dir),
                      queue_max=cfg.database.queue_max, tz=cfg.tz).start()
    except Exception as e:
        print(f"ctid: cannot open the database {cfg.database.url}: {e}", file=sys.stderr)
        return 1
    try:
        daemon = Ctid(cfg, store=store)
    except ValueError as e:            # IVR flows, PIN policy, ACD settings refused
        print(f"ctid: cannot start: {e}", file=sys.stderr)
        store.close()
        return 2
    try:
        daemon.open()
    except (OSError, ValueError, zmq.ZMQError, RuntimeError) as e:
        print(f"ctid: cannot start: {e}", file=sys.stderr)
        daemon.close()
        store.close()
        return 1
    if not args.no_metrics:
        try:
            daemon.metrics.serve(cfg.metrics.listen)
        except OSError as e:
            log.warning("metrics not served on %s: %s", cfg.metrics.listen, e)

    def stop(signum, frame):
        daemon.running = False

    def reload(signum, frame):
        try:
            daemon.server.reload_keys()
        except Exception as e:
            log.error("CTI keys not reloaded, the old ones stay: %s", e)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)
    log.info("running: %d cardd nodes, %d devices", len(daemon.links), len(daemon.model.devices))
    try:
        daemon.run()
    finally:
        daemon.close()
        if not store.close(timeout=10.0):
            log.warning("database writes still pending at exit are in the spool")
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
