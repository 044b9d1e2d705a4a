"""`whatsapp-operator simulator`: serve the Evolution API simulator until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import secrets
import signal
import sys

from whatsapp_operator.devkit.simulator.core import Simulator
from whatsapp_operator.devkit.simulator.instance import Timings
from whatsapp_operator.devkit.simulator.scenario import Scenario, ScenarioError
from whatsapp_operator.devkit.simulator.webhooks import RetryPolicy


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on, 0 for any (default: %(default)s)")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("EVOLUTION_API_KEY"),
        help="global API key (default: $EVOLUTION_API_KEY; if neither is set a random key is generated and printed)",
    )
    parser.add_argument("--scenario", metavar="FILE", help="YAML or JSON scenario to play (docs/simulator.md)")
    parser.add_argument("--qr-limit", type=int, default=30, help="QR codes before `refused` (default: %(default)s)")
    parser.add_argument(
        "--qr-interval", type=float, default=45.0, help="seconds between QR codes (default: %(default)s)"
    )
    parser.add_argument(
        "--reconnect-delay",
        type=float,
        default=3.0,
        help="seconds a paired instance takes to reopen after a drop (default: %(default)s)",
    )
    parser.add_argument(
        "--connect-wait",
        type=float,
        default=2.0,
        help="seconds GET connect waits after starting a socket; Evolution's 2 s (default: %(default)s)",
    )
    parser.add_argument(
        "--webhook-attempts", type=int, default=10, help="webhook delivery attempts per event (default: %(default)s)"
    )
    parser.add_argument(
        "--webhook-delay",
        type=float,
        default=5.0,
        help="first webhook retry delay in seconds, doubling up to 300 (default: %(default)s)",
    )
    parser.add_argument("--server-url", help="server_url in webhook envelopes (default: the simulator's own URL)")
    parser.add_argument(
        "--expose-token",
        action="store_true",
        help="put the instance token in webhook envelopes' apikey (AUTHENTICATION_EXPOSE_IN_FETCH_INSTANCES)",
    )
    parser.add_argument("--seed", type=int, help="seed for codes, jitter and fault rates (reproducible runs)")
    parser.add_argument("--log-level", default="INFO", help="logging level (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        scenario = Scenario.load(args.scenario) if args.scenario else None
    except ScenarioError as exc:
        print(f"invalid scenario: {exc}", file=sys.stderr)
        return 2
    api_key = args.api_key
    if not api_key:
        api_key = secrets.token_urlsafe(24)
        print(f"no --api-key or EVOLUTION_API_KEY given; generated API key: {api_key}", flush=True)
    if not _is_loopback(args.host):
        print(f"warning: listening on {args.host}; the /_sim/ admin API has no authentication", file=sys.stderr)
    simulator = Simulator(
        api_key,
        scenario,
        qr_limit=args.qr_limit,
        timings=Timings(
            qr_interval=args.qr_interval, reconnect_delay=args.reconnect_delay, connect_wait=args.connect_wait
        ),
        webhook_retry=RetryPolicy(max_attempts=args.webhook_attempts, initial_delay=args.webhook_delay),
        server_url=args.server_url,
        expose_token=args.expose_token,
        seed=args.seed,
    )
    try:
        return asyncio.run(_serve(simulator, args.host, args.port))
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1


async def _serve(simulator: Simulator, host: str, port: int) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    base_url = await simulator.start(host, port)
    print(f"Evolution API simulator listening on {base_url} (admin API: {base_url}/_sim/)", flush=True)
    try:
        await stop.wait()
    finally:
        await simulator.stop()
    print("simulator stopped", flush=True)
    return 0


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
