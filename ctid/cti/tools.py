"""ctictl subcommands for ctid and its CTI API: status, calls, check-config, keygen, and
`bench events`. Registered into ctictl's registry by register_all()."""
from __future__ import annotations

import argparse
import json
import os
import sys

from hotline_proto import cti_pb2

DEFAULT_CONFIG = "etc/ctid.toml"


def _err(msg: str) -> int:
    print(f"ctictl: {msg}", file=sys.stderr)
    return 2


# ---- talking to a running ctid -------------------------------------------------------------
def _client_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=DEFAULT_CONFIG, help="ctid.toml (default: %(default)s)")
    p.add_argument("--requests", help="ctid's request endpoint (default: from the config)")
    p.add_argument("--key", default=os.environ.get("CTICTL_KEY"),
                   help="this client's NAME.key_secret (CURVE; default: $CTICTL_KEY)")
    p.add_argument("--server-key", help="ctid's public key file (default: beside the config's "
                                        "server_key, NAME.key)")
    p.add_argument("--timeout", type=float, default=3.0)
    p.add_argument("--json", action="store_true")


def _request(args, req: cti_pb2.Request) -> cti_pb2.Reply:
    """One request over a DEALER (no subscription): ValueError/TimeoutError on trouble."""
    import zmq

    from ctid.config import load_ctid_config

    from .auth import load_keypair, load_public_key
    cfg = load_ctid_config(args.config)
    endpoint = args.requests or cfg.cti.requests
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if cfg.cti.server_key or args.server_key:
        server_pub = args.server_key or _public_beside(cfg.cti.server_key)
        if not args.key:
            raise ValueError("ctid uses CURVE: give this client's key pair with --key "
                             "NAME.key_secret (ctictl keygen NAME makes one)")
        pub, sec = load_keypair(args.key)
        sock.setsockopt(zmq.CURVE_SERVERKEY, load_public_key(server_pub))
        sock.setsockopt(zmq.CURVE_PUBLICKEY, pub)
        sock.setsockopt(zmq.CURVE_SECRETKEY, sec)
    sock.connect(endpoint)
    try:
        req.id = 1
        sock.send(req.SerializeToString())
        if not sock.poll(int(args.timeout * 1000)):
            raise TimeoutError(f"no answer from ctid at {endpoint} within {args.timeout:g} s "
                               f"(not running, or this key is not accepted)")
        reply = cti_pb2.Reply()
        reply.ParseFromString(sock.recv())
        return reply
    finally:
        sock.close()


def _public_beside(secret_path: str) -> str:
    if secret_path.endswith("_secret"):
        return secret_path[: -len("_secret")]
    return secret_path


def _call(args, req: cti_pb2.Request) -> cti_pb2.Reply | None:
    from ctid.config import ConfigError
    try:
        reply = _request(args, req)
    except ConfigError as e:
        _err(f"configuration refused:\n{e}")
        return None
    except (ValueError, TimeoutError, OSError) as e:
        _err(str(e))
        return None
    if not reply.ok:
        _err(reply.error)
        return None
    return reply


def cmd_status(args) -> int:
    reply = _call(args, cti_pb2.Request(system_status=cti_pb2.SystemStatus()))
    if reply is None:
        return 1
    status = dict(reply.status)
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
        return 0
    for k in sorted(status):
        print(f"{k:<22} {status[k]}")
    return 0


_STATE = {v: k[3:].lower() for k, v in cti_pb2.ConnectionState.items()}


def format_calls(reply: cti_pb2.Reply) -> str:
    lines = [f"{len(reply.calls)} calls at seq {reply.seq} (epoch {reply.epoch})"]
    if reply.calls:
        lines.append(f"{'CALL':<8} {'AGE':>6}  {'PARTIES':<48} DATA")
    import time
    now = time.time()
    for c in sorted(reply.calls, key=lambda c: c.started):
        parties = ", ".join(f"{x.device}({_STATE.get(x.state, x.state)})" for x in c.connections)
        data = " ".join(f"{k}={v}" for k, v in sorted(c.data.items()))
        age = f"{now - c.started:.0f}s" if c.started else "-"
        lines.append(f"{c.call_id:<8} {age:>6}  {parties:<48} {data}")
    return "\n".join(lines)


def cmd_calls(args) -> int:
    reply = _call(args, cti_pb2.Request(snapshot=cti_pb2.Snapshot()))
    if reply is None:
        return 1
    if args.json:
        from google.protobuf.json_format import MessageToDict
        print(json.dumps({"seq": reply.seq, "epoch": reply.epoch,
                          "calls": [MessageToDict(c) for c in reply.calls]}, indent=2))
        return 0
    print(format_calls(reply))
    return 0


# ---- offline ----------------------------------------------------------------------------------
def _check_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", default=None, help="ctid.toml (default: --config)")
    p.add_argument("--config", dest="config_opt", default=DEFAULT_CONFIG)


def cmd_check_config(args) -> int:
    from ctid.config import ConfigError, load_ctid_config

    from .auth import KeysError, KeyStore, load_keypair
    path = args.config or args.config_opt
    try:
        cfg = load_ctid_config(path)
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        print(f"{path}: {len(e.problems)} problem(s)", file=sys.stderr)
        return 2
    problems = []
    if cfg.cti.keys:
        try:
            keys = KeyStore.load(cfg.cti.keys)
        except KeysError as e:
            problems.append(str(e))
        else:
            print(f"{cfg.cti.keys}: ok ({len(keys)} client keys)")
    if cfg.cti.server_key:
        try:
            load_keypair(cfg.cti.server_key)
        except ValueError as e:
            problems.append(str(e))
        if not cfg.cti.keys:
            problems.append(f"{path}: cti.keys: server_key is set but no client keys file")
    problems += _check_ivr(cfg, path)
    if problems:
        for p in problems:
            print(p, file=sys.stderr)
        return 2
    print(f"{path}: ok ({len(cfg.cardd)} cardd nodes, {len(cfg.extensions)} extensions, "
          f"{len(cfg.trunk_groups)} trunk groups, {len(cfg.routes)} routes, "
          f"{len(cfg.calendars)} calendars; CTI security {'CURVE' if cfg.cti.server_key else 'OFF'})")
    return 0


def _check_ivr(cfg, path: str) -> list[str]:
    """The IVR flows [ivr] names (file:line: node: problem) and the flows routes name."""
    targets = sorted({t.partition(":")[2] for r in cfg.routes for t in (r.to, r.closed_to)
                      if t.startswith("ivr:")})
    if cfg.ivr is None:
        return [f"{path}: route to ivr:{t}: there is no [ivr] section" for t in targets]
    from ivr.validate import check_paths, load_checked
    problems = check_paths(cfg.ivr["flows"])
    if problems:
        return problems
    flows = load_checked(cfg.ivr["flows"])
    problems = [f"{path}: route to ivr:{t}: no flow named {t!r} in {', '.join(cfg.ivr['flows'])}"
                for t in targets if t not in flows]
    if not problems:
        print(f"IVR: ok ({len(flows.flows)} flows from {', '.join(cfg.ivr['flows'])})")
    return problems


def _keygen_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="the client's (or the server's) name, e.g. agent-1001, ctid")
    p.add_argument("--dir", default=".", help="where to write NAME.key and NAME.key_secret")
    p.add_argument("--role", choices=("agent", "supervisor", "admin", "observer", "integration"),
                   help="print a keys-file entry with this role")
    p.add_argument("--devices", nargs="*", default=[], help="scope: devices, e.g. ext:8001")
    p.add_argument("--agents", nargs="*", default=[])
    p.add_argument("--queues", nargs="*", default=[])


def cmd_keygen(args) -> int:
    from .auth import generate_keypair
    try:
        public, pub_path, sec_path = generate_keypair(args.dir, args.name)
    except (ValueError, OSError) as e:
        return _err(str(e))
    print(f"public key  {pub_path}\nsecret key  {sec_path} (mode 0600: keep it private)")
    print("\n# for the keys file ([cti] keys in ctid.toml):")
    print(f"[clients.{args.name}]\nkey = \"{public}\"")
    if args.role:
        print(f"role = \"{args.role}\"")
        for k in ("devices", "agents", "queues"):
            if getattr(args, k):
                print(f"{k} = {json.dumps(getattr(args, k))}")
    return 0


def _bench_args(p: argparse.ArgumentParser) -> None:
    from ctid.bench_events import configure
    configure(p)


def _bench(args) -> int:
    from ctid.bench_events import run_cli
    return run_cli(args)


def register_all(register, register_bench) -> None:
    register("status", "ctid's health and counts (SystemStatus)", _client_args, cmd_status)
    register("calls", "calls in progress (Snapshot)", _client_args, cmd_calls)
    register("check-config", "check ctid.toml (and the CTI keys file it names)", _check_args,
             cmd_check_config)
    register("keygen", "make a CURVE key pair (NAME.key, NAME.key_secret)", _keygen_args,
             cmd_keygen)
    register_bench("events", "CTI event fan-out: rate, latency, gaps with a slow subscriber",
                   _bench_args, _bench)
