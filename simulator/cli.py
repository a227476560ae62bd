"""Command line: `python -m simulator [options]`; every option also reads an environment variable."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from simulator.generator import SampleGenerator, device_rng
from simulator.noise import shared_table
from simulator.outbox import DEFAULT_OUTBOX
from simulator.profile import DEFAULT_PROFILE, PROFILES_DIR, ProfileError, load_profile
from simulator.runner import EXIT_INCOMPLETE, RunConfig, Runner
from simulator.wire import LinkOptions

DEFAULT_URL = "ws://127.0.0.1:8000/ws/sensors/"
DEFAULT_TOKEN_FILE = Path(".local/simulator/tokens.json")
MAX_BATCH = 500
EXIT_USAGE = 2


class UsageError(ValueError):
    """Bad option or environment value; the message names it."""


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _env_number(name: str, default: float | None, kind: type[int] | type[float]) -> float | int | None:
    raw = _env(name)
    if raw is None:
        return default
    try:
        return kind(raw)
    except ValueError:
        raise UsageError(f"{name}={raw!r} is not a valid {kind.__name__}") from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; defaults come from the environment where one is named."""
    p = argparse.ArgumentParser(
        prog="python -m simulator",
        description="ESP32 SQAL device simulator: VL53L8CH + AS7341 samples over WebSocket (docs/protocol.md).",
    )
    add = p.add_argument
    add("--url", default=_env("BACKEND_WS_URL", DEFAULT_URL), help="server URL [BACKEND_WS_URL]")
    add("--devices", type=int, default=_env_number("SIMULATOR_DEVICES", 1, int), help="number of devices")
    add("--device-prefix", default="ESP32_LL_", help="device ids are PREFIX01, PREFIX02, ...")
    add(
        "--interval",
        type=float,
        default=_env_number("GENERATION_INTERVAL", 5.0, float),
        help="seconds between two samples of one device; 0 = as fast as possible [GENERATION_INTERVAL]",
    )
    add("--count", type=int, help="samples per device, then wait for every ack and exit")
    add("--duration", type=float, help="generate for this many seconds, then wait for acks and exit")
    add("--profile", default=_env("CONFIG_PATH", DEFAULT_PROFILE), help="profile name or YAML path [CONFIG_PATH]")
    add("--token", default=_env("DEVICE_TOKEN"), help="token for devices missing from the token file [DEVICE_TOKEN]")
    add("--token-file", default=_env("DEVICE_TOKEN_FILE"), help="JSON {id: token} or ID=TOKEN lines")
    add("--token-in-query", action="store_true", help="send the token as ?token= instead of a header")
    add("--seed", type=int, default=_env_number("SIMULATOR_SEED", None, int), help="reproducible sample content")
    add("--batch", type=int, default=0, help=f"samples per sensor_batch frame (0 = sensor_data; max {MAX_BATCH})")
    add("--linger", type=float, default=1.0, help="with --batch: longest wait for a full batch (s)")
    add("--window", type=int, default=8, help="frames sent without waiting for their reply")
    add(
        "--max-message-bytes",
        type=int,
        default=_env_number("WS_MAX_MESSAGE_BYTES", 1_048_576, int),
        help="largest frame to send [WS_MAX_MESSAGE_BYTES]",
    )
    add("--outbox", default=_env("SIMULATOR_OUTBOX", str(DEFAULT_OUTBOX)), help="sqlite outbox [SIMULATOR_OUTBOX]")
    add("--status-interval", type=float, default=5.0, help="seconds between status lines on stderr")
    add("--drain-timeout", type=float, default=60.0, help="longest wait for acks after generation ends (s)")
    add("--max-pending", type=int, default=5000, help="per device: skip measurements while this many are unacked")
    add("--heartbeat", type=float, default=30.0, help="send a ping frame after this many idle seconds (0 = off)")
    add("--backoff-max", type=float, default=30.0, help="longest reconnect delay (s)")
    add(
        "--pool",
        type=int,
        default=0,
        help="load tests: simulate N samples per device, then reuse them with new ids (0 = simulate every one)",
    )
    add(
        "--chaos-drop",
        type=float,
        default=0.0,
        help="fault tests: probability of cutting the connection right after sending a frame",
    )
    add("--summary-json", help="write the run's totals (and ack latency p50/p99) to this file")
    add("--print-sample", action="store_true", help="print one generated sensor_data frame and exit")
    add("--list-profiles", action="store_true", help="list the bundled profiles and exit")
    add("--log-level", default=_env("LOG_LEVEL", "WARNING"), help="logging level on stderr")
    return p


def read_token_file(path: Path) -> dict[str, str]:
    """Tokens by device id from a JSON object or `DEVICE_ID=TOKEN` lines (`#` comments, blank lines)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--token-file {path}: {exc.strerror}") from None
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"--token-file {path}: invalid JSON ({exc})") from None
        if not all(isinstance(k, str) and isinstance(v, str) and v for k, v in data.items()):
            raise UsageError(f"--token-file {path}: expected an object of device id -> token strings")
        return dict(data)
    tokens = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        device_id, sep, token = line.partition("=")
        if not sep or not device_id.strip() or not token.strip():
            raise UsageError(f"--token-file {path}:{number}: expected DEVICE_ID=TOKEN")
        tokens[device_id.strip()] = token.strip()
    return tokens


def device_ids(prefix: str, count: int) -> list[str]:
    """`ESP32_LL_01` ... (two digits, more when there are over 99 devices)."""
    width = max(2, len(str(count)))
    return [f"{prefix}{n:0{width}d}" for n in range(1, count + 1)]


def resolve_tokens(args: argparse.Namespace, ids: list[str]) -> dict[str, str]:
    """Token of every device: token file first, then --token; a missing one is a usage error."""
    file_tokens: dict[str, str] = {}
    if args.token_file:
        file_tokens = read_token_file(Path(args.token_file))
    elif DEFAULT_TOKEN_FILE.exists():
        file_tokens = read_token_file(DEFAULT_TOKEN_FILE)
    tokens = {i: file_tokens.get(i) or args.token for i in ids}
    missing = [i for i, token in tokens.items() if not token]
    if missing:
        raise UsageError(
            f"no token for {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}: "
            "use --token/DEVICE_TOKEN or --token-file/DEVICE_TOKEN_FILE"
        )
    return {i: str(token) for i, token in tokens.items()}


def _check(args: argparse.Namespace) -> None:
    checks = [
        (args.devices >= 1, "--devices must be >= 1"),
        (args.interval >= 0, "--interval must be >= 0"),
        (args.count is None or args.count >= 1, "--count must be >= 1"),
        (args.duration is None or args.duration > 0, "--duration must be > 0"),
        (0 <= args.batch <= MAX_BATCH, f"--batch must be 0-{MAX_BATCH}"),
        (args.window >= 1, "--window must be >= 1"),
        (args.pool >= 0, "--pool must be >= 0"),
        (0 <= args.chaos_drop < 1, "--chaos-drop must be in [0, 1)"),
        (args.max_message_bytes >= 16_384, "--max-message-bytes must be >= 16384"),
        (args.url.startswith(("ws://", "wss://")), f"--url must start with ws:// or wss:// (got {args.url!r})"),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """Validate the options and build the run configuration."""
    _check(args)
    try:
        profile = load_profile(args.profile)
    except ProfileError as exc:
        raise UsageError(str(exc)) from None
    ids = device_ids(args.device_prefix, args.devices)
    return RunConfig(
        device_ids=ids,
        tokens=resolve_tokens(args, ids),
        profile=profile,
        link=LinkOptions(
            url=args.url,
            batch=args.batch,
            window=args.window,
            linger_s=args.linger,
            max_message_bytes=args.max_message_bytes,
            token_in_query=args.token_in_query,
            backoff_max_s=args.backoff_max,
            heartbeat_s=args.heartbeat,
            drop_probability=args.chaos_drop,
        ),
        interval_s=args.interval,
        count=args.count,
        duration_s=args.duration,
        seed=args.seed,
        outbox_path=Path(args.outbox),
        status_interval_s=args.status_interval,
        drain_timeout_s=args.drain_timeout,
        max_pending=args.max_pending,
        pool=args.pool,
    )


async def _run(config: RunConfig) -> tuple[int, dict[str, object]]:
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupted.set)
    runner = Runner(config)
    try:
        result = await runner.run(interrupted)
    finally:
        runner.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return result.exit_code, result.as_dict()


def _print_sample(args: argparse.Namespace) -> int:
    try:
        profile = load_profile(args.profile)
    except ProfileError as exc:
        raise UsageError(str(exc)) from None
    device_id = device_ids(args.device_prefix, 1)[0]
    generator = SampleGenerator(device_id, profile, device_rng(args.seed, device_id), noise=shared_table(args.seed))
    print(json.dumps(generator.frame(1, datetime.now(UTC)), indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code (0: every sample acked, 1: some not, 130: Ctrl-C)."""
    try:
        args = build_parser().parse_args(argv)
        logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
        if args.list_profiles:
            print("\n".join(sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))))
            return 0
        if args.print_sample:
            return _print_sample(args)
        config = config_from_args(args)
    except (UsageError, ValueError) as exc:
        print(f"simulator: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    code, summary = asyncio.run(_run(config))
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if summary.get("failed_devices"):
        print(f"simulator: devices gave up: {summary['failed_devices']}", file=sys.stderr)
    if code == EXIT_INCOMPLETE:
        print(
            f"simulator: {summary['pending']} sample(s) still unacked, {summary['rejected']} rejected "
            f"(kept in {config.outbox_path})",
            file=sys.stderr,
        )
        errors = summary.get("last_errors") or {}
        if isinstance(errors, dict) and errors:
            print(f"simulator: last connection error: {sorted(set(errors.values()))[0]}", file=sys.stderr)
    return code
