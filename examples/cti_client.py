#!/usr/bin/env python3
"""A small CTI client: subscribes to ctid's events, prints them, and shows gap recovery.

    python examples/cti_client.py --config etc/ctid.toml --key run/keys/me.key_secret

It starts from a snapshot (the calls in progress), then prints each CSTA event in order.
With --stall SECONDS it stops reading for a while after the first event, with a tiny
receive queue, so it loses events on purpose: the library reports the loss (SystemStatus,
messagesLost) and recovers them by Replay, or by a fresh Snapshot when ctid no longer holds
them all. Press Ctrl-C to stop; the gap statistics are printed at the end.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ctid.cti.client import CtiClient, SnapshotTaken  # noqa: E402
from hotline_proto import cti_pb2  # noqa: E402

STATES = {v: k[3:].lower() for k, v in cti_pb2.ConnectionState.items()}


def describe(e: cti_pb2.Event) -> str:
    parts = [f"#{e.seq:<6} {e.name:<18}"]
    if e.call_id:
        parts.append(f"call {e.call_id}")
    if e.device:
        parts.append(f"at {e.device}")
    if e.calling or e.called:
        parts.append(f"{e.calling or '?'} -> {e.called or '?'}")
    if e.cause:
        parts.append(f"cause {e.cause}")
    conns = ", ".join(f"{c.device}:{STATES.get(c.state, c.state)}" for c in e.connections)
    if conns:
        parts.append(f"[{conns}]")
    return "  ".join(parts)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", help="ctid.toml: endpoints and the server's key from it")
    p.add_argument("--events", help="ctid's event endpoint (PUB)")
    p.add_argument("--requests", help="ctid's request endpoint (ROUTER)")
    p.add_argument("--server-key", help="ctid's public key file (NAME.key)")
    p.add_argument("--key", help="this client's key pair (NAME.key_secret)")
    p.add_argument("--seconds", type=float, default=0, help="stop after this long (0: never)")
    p.add_argument("--stall", type=float, default=0,
                   help="stop reading for this long after the first event (to lose some)")
    args = p.parse_args(argv)

    events, requests, server_key = args.events, args.requests, args.server_key
    if args.config:
        from ctid.config import load_ctid_config
        cfg = load_ctid_config(args.config)
        events = events or cfg.cti.events
        requests = requests or cfg.cti.requests
        if cfg.cti.server_key and not server_key:
            server_key = cfg.cti.server_key.removesuffix("_secret")
    if not events or not requests:
        p.error("give --config, or --events and --requests")
    kw = {}
    if server_key:
        if not args.key:
            p.error("ctid uses CURVE: give this client's key pair with --key NAME.key_secret")
        from ctid.cti.auth import load_keypair, load_public_key
        kw = {"server_key": load_public_key(server_key), "keypair": load_keypair(args.key)}
    client = CtiClient(events, requests, start="snapshot", rcvhwm=2 if args.stall else 1000, **kw)
    stalled = False
    end = time.monotonic() + args.seconds if args.seconds else None
    try:
        while end is None or time.monotonic() < end:
            for item in client.poll(timeout_ms=250):
                if isinstance(item, SnapshotTaken):
                    print(f"--- snapshot at seq {item.seq} ({item.reason}): {len(item.calls)} calls")
                    for call in item.calls:
                        conns = ", ".join(f"{c.device}:{STATES.get(c.state, c.state)}"
                                          for c in call.connections)
                        print(f"    call {call.call_id} [{conns}] {dict(call.data)}")
                elif item.name == "SystemStatus":
                    print(f"--- SystemStatus {item.reason}: {item.lost} events lost; recovering")
                else:
                    print(describe(item))
                    if args.stall and not stalled:
                        stalled = True
                        print(f"--- not reading for {args.stall:g} s")
                        time.sleep(args.stall)
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    finally:
        st = client.stats
        print(f"--- gaps detected {st.gaps_detected}, recovered {st.gaps_recovered} "
              f"(replay {st.gaps_replayed}, snapshot {st.gaps_snapshot}), unrecovered "
              f"{st.gaps_unrecovered}; events lost {st.messages_lost}, replayed "
              f"{st.messages_replayed}")
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
