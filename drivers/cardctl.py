"""cardctl: the operator's tool for cardd (status, D-channel captures, DTMF analysis of
files, benchmarks)."""
from __future__ import annotations

import argparse
import sys

import zmq

from drivers import config as config_mod
from hotline_proto import cardd_pb2


def request(endpoint: str, cmd: cardd_pb2.Command, timeout_s: float = 3.0) -> cardd_pb2.Reply:
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        sock.send(cmd.SerializeToString())
        if not sock.poll(int(timeout_s * 1000)):
            raise TimeoutError(f"no answer from cardd at {endpoint} within {timeout_s:g} s")
        reply = cardd_pb2.Reply()
        reply.ParseFromString(sock.recv())
        return reply
    finally:
        sock.close()


def format_status(reply: cardd_pb2.Reply) -> str:
    lines = ["SPAN  NAME              KIND    CHANNELS  ALARMS"]
    for s in reply.spans:
        alarms = ",".join(s.alarm_names) or "ok"
        lines.append(f"{s.span:<5} {s.name:<17} {s.kind:<7} {s.channels:<9} {alarms}")
    lines.append("")
    lines.append("CHAN  SPAN  SIG  STATE           SERVICE  CALL            ANI              DNIS")
    for c in reply.channels:
        sig = cardd_pb2.SignalingKind.Name(c.signaling).replace("SIG_", "").lower()
        state = cardd_pb2.ChannelState.Name(c.state).lower()
        service = "in" if c.in_service else "OUT"
        lines.append(f"{c.channel:<5} {c.span:<5} {sig:<4} {state:<15} {service:<8} "
                     f"{c.call_id or '-':<15} {c.ani or '-':<16} {c.dnis or '-'}")
    lines.append(f"\nlast event seq {reply.seq}")
    return "\n".join(lines)


def cmd_status(args) -> int:
    cfg = config_mod.load_cardd_config(args.config)
    endpoint = args.endpoint or cfg.commands_endpoint
    try:
        reply = request(endpoint, cardd_pb2.Command(id=1, status=cardd_pb2.Status()))
    except TimeoutError as e:
        print(f"cardctl: {e}", file=sys.stderr)
        return 1
    if not reply.ok:
        print(f"cardctl: {reply.error}", file=sys.stderr)
        return 1
    print(format_status(reply))
    return 0


def cmd_pcap(args) -> int:
    """Have cardd write span N's D-channel to FILE for S seconds, wait, say what came."""
    import os
    import time

    from drivers.signaling.pri.pcap import PcapError, read_pcap
    cfg = config_mod.load_cardd_config(args.config)
    endpoint = args.endpoint or cfg.commands_endpoint
    path = os.path.abspath(args.file)          # cardd runs elsewhere: give it a full path
    cmd = cardd_pb2.Command(id=1, capture=cardd_pb2.Capture(span=args.span, path=path,
                                                            seconds=args.seconds))
    try:
        reply = request(endpoint, cmd)
    except TimeoutError as e:
        print(f"cardctl: {e}", file=sys.stderr)
        return 1
    if not reply.ok:
        print(f"cardctl: {reply.error}", file=sys.stderr)
        return 1
    if args.seconds <= 0 or args.no_wait:
        print(f"cardctl: span {args.span}: capture "
              + ("stopped" if args.seconds <= 0 else f"to {path} for {args.seconds:g} s started"))
        return 0
    time.sleep(args.seconds + 0.5)
    try:
        frames = sum(1 for _ in read_pcap(path))
    except (OSError, PcapError) as e:
        print(f"cardctl: capture {path}: {e}", file=sys.stderr)
        return 1
    print(f"cardctl: span {args.span}: {frames} D-channel frames in {path} "
          f"(tshark -r {args.file} decodes them)")
    return 0


def cmd_dtmf(args) -> int:
    from drivers.tools import dtmf_cli
    return dtmf_cli.main(args.files)


def cmd_bench(args) -> int:
    import importlib
    module = importlib.import_module(f"drivers.bench.{args.what}")
    return module.main(args.rest)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cardctl", description="Hotline cardd operator tool")
    p.add_argument("--config", default="etc/cardd.toml")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("status", help="spans and channels of a running cardd")
    s.add_argument("--endpoint", help="cardd's command endpoint (default: from the config)")
    s.set_defaults(func=cmd_status)
    c = sub.add_parser("pcap", help="capture a PRI span's D-channel to a pcap file")
    c.add_argument("--span", type=int, required=True)
    c.add_argument("--seconds", type=float, required=True, help="how long (0 stops a capture)")
    c.add_argument("--endpoint", help="cardd's command endpoint (default: from the config)")
    c.add_argument("--no-wait", action="store_true", help="return once the capture started")
    c.add_argument("file")
    c.set_defaults(func=cmd_pcap)
    d = sub.add_parser("dtmf", help="print the DTMF digits found in 8 kHz mono WAV files")
    d.add_argument("files", nargs="+")
    d.set_defaults(func=cmd_dtmf)
    b = sub.add_parser("bench", help="benchmarks: media, dtmf, pri")
    b.add_argument("what", choices=["media", "dtmf", "pri"])
    b.add_argument("rest", nargs=argparse.REMAINDER)
    b.set_defaults(func=cmd_bench)
    args = p.parse_args(argv)
    try:
        return args.func(args)
    except config_mod.ConfigError as e:
        print(f"cardctl: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
