"""The benchmark's command line and its run: scenarios in order, then the report and the JSON."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio

from ._candidate import k8sa_config_problems
from ._members import REPO_ROOT
from ._report import render
from ._scenarios import (
    IMPLS,
    Impl,
    LatencyResult,
    Settings,
    Timings,
    measure_failovers,
    measure_handovers,
    measure_load,
)
from ._targets import (
    Target,
    TargetError,
    embedded_target,
    external_target,
    le_example,
    real_target,
)

RESULTS = REPO_ROOT / "benchmarks" / "results"
SCENARIOS = ("handover", "failover", "load")


def _counts(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"want comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"want positive integers, got {text!r}")
    return values


def _names(choices: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [x.strip() for x in text.split(",") if x.strip()]
        wrong = [n for n in names if n not in choices]
        if wrong or not names:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)}; got {text!r}")
        return names

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/election.py",
        description=(
            "Leader-election benchmark: graceful handover latency, crash failover, API requests "
            "per minute and per-process CPU/RSS, for leaderelect (watch and polling), "
            "kubernetes_asyncio.leaderelection and (with --real or --kubeconfig) client-go. "
            "Prints Markdown tables and writes JSON."
        ),
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--real",
        action="store_true",
        help="start the real kube-apiserver (../shared/kube-apiserver/up.sh) and add client-go",
    )
    where.add_argument(
        "--kubeconfig", type=Path, help="run against this cluster instead (adds client-go too)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a small run (< 1 minute): few samples, short windows"
    )
    parser.add_argument("--lease-duration", type=float, default=4.0, help="seconds (default 4)")
    parser.add_argument("--renew-deadline", type=float, default=2.5, help="seconds (default 2.5)")
    parser.add_argument("--retry-period", type=float, default=0.5, help="seconds (default 0.5)")
    parser.add_argument(
        "--handovers", type=int, help="graceful handovers per implementation (default 200)"
    )
    parser.add_argument(
        "--expiry-handovers",
        type=int,
        help="handovers for an implementation that cannot release (each waits out a lease; "
        "default 20)",
    )
    parser.add_argument(
        "--failovers", type=int, help="crash failovers per implementation (default 20)"
    )
    parser.add_argument(
        "--followers", type=_counts, help="follower counts for the load phases (default 1,10,100)"
    )
    parser.add_argument(
        "--window", type=float, help="seconds of each steady-state window (default 60)"
    )
    parser.add_argument(
        "--warmup", type=float, help="seconds between a fleet's start and its window (default 5)"
    )
    parser.add_argument(
        "--fleet-size", type=int, default=3, help="candidates in handover/failover runs (3)"
    )
    parser.add_argument(
        "--electors-per-process",
        type=int,
        default=10,
        help="followers beyond this many run this many electors per process (default 10)",
    )
    parser.add_argument(
        "--implementations",
        type=_names(tuple(IMPLS)),
        help="a subset of " + ", ".join(IMPLS) + " (default: all that apply)",
    )
    parser.add_argument(
        "--only", type=_names(SCENARIOS), help="a subset of " + ", ".join(SCENARIOS)
    )
    parser.add_argument(
        "--concurrent",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the implementations' handover and failover runs side by side (faster, "
        "noisier; default only with --quick)",
    )
    parser.add_argument(
        "--together-up-to",
        type=int,
        help="load phases with up to this many followers run every implementation's fleet at "
        "once; bigger ones run one implementation at a time (default: always at once on the "
        "embedded server, up to 10 followers on a real one)",
    )
    parser.add_argument("--seed", type=int, help="seed for the random pauses between steps")
    parser.add_argument(
        "--time-limit", type=float, help="minutes after which the run is cut short (default 60)"
    )
    parser.add_argument(
        "--json", type=Path, help="where to write the JSON (default benchmarks/results/<time>.json)"
    )
    return parser


def _settings(args: argparse.Namespace, impls: list[str], go: Path | None) -> Settings:
    quick = args.quick

    def pick(value: Any, default: Any, small: Any) -> Any:
        return value if value is not None else (small if quick else default)

    return Settings(
        timings=Timings(args.lease_duration, args.renew_deadline, args.retry_period),
        handovers=pick(args.handovers, 200, 10),
        expiry_handovers=pick(args.expiry_handovers, 20, 1),
        failovers=pick(args.failovers, 20, 1),
        followers=pick(args.followers, [1, 10, 100], [1, 10]),
        window=pick(args.window, 60.0, 5.0),
        warmup=pick(args.warmup, 5.0, 2.0),
        fleet_size=max(2, args.fleet_size),
        electors_per_process=max(1, args.electors_per_process),
        impls=impls,
        concurrent=args.concurrent if args.concurrent is not None else quick,
        together_up_to=pick(
            args.together_up_to,
            10 if (args.real or args.kubeconfig is not None) else 1_000_000,
            1_000_000,
        ),
        seed=args.seed,
        go_binary=go,
    )


def _machine() -> dict[str, Any]:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    memory = 0.0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) / 1024 / 1024
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(memory, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_start": [round(x, 2) for x in os.getloadavg()],
        "load_end": [],
    }


@contextlib.asynccontextmanager
async def _open_target(args: argparse.Namespace) -> AsyncIterator[Target]:
    if args.real:
        async with real_target() as real:
            yield real
    elif args.kubeconfig is not None:
        async with external_target(args.kubeconfig) as external:
            yield external
    else:
        async with embedded_target() as embedded:
            yield embedded


def _implementations(args: argparse.Namespace, notes: list[str]) -> tuple[list[str], Path | None]:
    remote = args.real or args.kubeconfig is not None
    go = le_example()
    wanted = args.implementations or [
        k for k in IMPLS if k != "client-go" or (remote and go is not None)
    ]
    if "client-go" in wanted:
        if not remote:
            raise SystemExit("client-go runs only with --real or --kubeconfig")
        if go is None:
            raise SystemExit("client-go's le-example is not there (../shared/kube-apiserver/bin)")
    elif remote and go is None:
        notes.append("client-go left out: le-example not found")
    if "k8sa" in wanted:
        if not float(args.lease_duration).is_integer():
            notes.append(
                "kubernetes_asyncio left out: it writes int(str(lease_duration)), so it needs "
                "whole seconds"
            )
            wanted.remove("k8sa")
        else:
            problems = k8sa_config_problems(
                args.lease_duration, args.renew_deadline, args.retry_period
            )
            if problems:
                notes.append(
                    f"kubernetes_asyncio's Config rejects {problems}: it was built with valid "
                    "timings, then given these ones (its algorithm reads the attributes)"
                )
    return wanted, go


async def _each(
    impls: Sequence[Impl], concurrent: bool, run: Callable[[Impl], Awaitable[LatencyResult]]
) -> dict[str, LatencyResult]:
    results: dict[str, LatencyResult] = {}

    async def one(impl: Impl) -> None:
        try:
            results[impl.key] = await run(impl)
        except Exception as exc:  # a bug here must not cost the other figures
            results[impl.key] = LatencyResult(impl.key, "?", error=_failure(exc))
        _progress(results[impl.key])

    if concurrent:
        async with anyio.create_task_group() as tg:
            for impl in impls:
                tg.start_soon(one, impl)
    else:
        for impl in impls:
            await one(impl)
    return {impl.key: results[impl.key] for impl in impls if impl.key in results}


def _failure(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(exc))
    return f"{type(exc).__name__}: {exc}\n{text}"


def _progress(result: LatencyResult) -> None:
    from ._report import ms, summary

    s = summary(result.samples)
    text = (
        f"  {result.scenario:<8} {IMPLS[result.impl].label:<36} n={s['n']:<4} "
        f"p50 {ms(s['p50'], result.scenario == 'failover')}  "
        f"max {ms(s['max'], result.scenario == 'failover')}  ({result.seconds:.0f} s)"
    )
    if result.error:
        text += f"  FAILED: {result.error.splitlines()[0]}"
    print(text, file=sys.stderr, flush=True)


async def _run(args: argparse.Namespace, data: dict[str, Any], settings: Settings) -> None:
    impls = [IMPLS[k] for k in settings.impls]
    scenarios = args.only or list(SCENARIOS)
    async with _open_target(args) as target:
        data["target"] = target.description
        data["target_kind"] = target.kind
        if not target.per_user_counts:
            data["notes"].append(
                "requests are counted by each candidate (the server's users are shared); "
                "'server's own count' is apiserver_request_total from clients, all fleets"
            )
        if "handover" in scenarios:
            print("graceful handovers ...", file=sys.stderr, flush=True)

            async def handover(impl: Impl) -> LatencyResult:
                count = settings.handovers if impl.releases else settings.expiry_handovers
                return await measure_handovers(impl, target, settings, count)

            for key, r in (await _each(impls, settings.concurrent, handover)).items():
                data["handover"][key] = r.to_json()
        if "failover" in scenarios:
            print("crash failovers ...", file=sys.stderr, flush=True)

            async def failover(impl: Impl) -> LatencyResult:
                return await measure_failovers(impl, target, settings, settings.failovers)

            for key, r in (await _each(impls, settings.concurrent, failover)).items():
                data["failover"][key] = r.to_json()
        if "load" in scenarios:
            for followers in settings.followers:
                print(f"steady state, {followers} followers ...", file=sys.stderr, flush=True)
                together = followers <= settings.together_up_to
                groups = [impls] if together else [[impl] for impl in impls]
                entry: dict[str, Any] = {"followers": followers, "results": {}, "groups": []}
                for group in groups:
                    try:
                        phase = await measure_load(group, target, settings, followers)
                    except Exception as exc:  # a bug here must not cost the other figures
                        data["notes"].append(f"load phase with {followers} followers failed")
                        print(_failure(exc), file=sys.stderr, flush=True)
                        continue
                    figures = phase.to_json()
                    entry["results"].update(figures.pop("results"))
                    figures["impls"] = [impl.key for impl in group]
                    entry["groups"].append(figures)
                    print(
                        f"  {', '.join(figures['impls'])}: done in {phase.seconds:.0f} s "
                        f"(load {phase.load_after[0]:.2f})",
                        file=sys.stderr,
                        flush=True,
                    )
                if entry["groups"]:
                    data["load"].append(entry)


async def _stop_on_signals(scope: anyio.CancelScope, data: dict[str, Any]) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            data["interrupted"] = signal.Signals(signum).name
            print(f"{signal.Signals(signum).name}: stopping", file=sys.stderr, flush=True)
            scope.cancel()
            return


async def _amain(args: argparse.Namespace) -> int:
    notes: list[str] = []
    impls, go = _implementations(args, notes)
    settings = _settings(args, impls, go)
    _check_timings(settings)
    started = time.monotonic()
    data: dict[str, Any] = {
        "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "command": " ".join(["python", "benchmarks/election.py", *sys.argv[1:]]),
        "revision": getattr(args, "revision", "unknown"),
        "machine": _machine(),
        "settings": {
            "timings": {
                "lease_duration": settings.timings.lease_duration,
                "renew_deadline": settings.timings.renew_deadline,
                "retry_period": settings.timings.retry_period,
            },
            "handovers": settings.handovers,
            "expiry_handovers": settings.expiry_handovers,
            "failovers": settings.failovers,
            "followers": settings.followers,
            "window": settings.window,
            "warmup": settings.warmup,
            "fleet_size": settings.fleet_size,
            "electors_per_process": settings.electors_per_process,
            "concurrent": settings.concurrent,
            "together_up_to": settings.together_up_to,
            "quick": args.quick,
        },
        "implementations": {k: IMPLS[k].label for k in impls},
        "notes": notes,
        "handover": {},
        "failover": {},
        "load": [],
        "target": "",
        "error": None,
    }
    if any(f > settings.electors_per_process for f in settings.followers):
        notes.append(
            f"beyond {settings.electors_per_process} followers, Python followers run "
            f"{settings.electors_per_process} electors per process (each its own API client and "
            "user); their CPU is shown per elector, their RSS per process; client-go's run one "
            "per process"
        )
    notes.append(
        "handover and failover runs: one implementation at a time"
        if not settings.concurrent
        else "handover and failover runs: implementations side by side (--concurrent)"
    )
    notes.append(
        "load phases: the implementations' fleets run at the same time, each on its own Lease"
        + (
            f", up to {settings.together_up_to} followers; beyond, one implementation at a time"
            if any(f > settings.together_up_to for f in settings.followers)
            else ""
        )
    )
    limit = (args.time_limit or (5.0 if args.quick else 60.0)) * 60
    async with anyio.create_task_group() as tg:
        tg.start_soon(_stop_on_signals, tg.cancel_scope, data)
        try:
            with anyio.fail_after(limit):
                await _run(args, data, settings)
        except TimeoutError:
            data["error"] = f"cut short by the time limit ({limit / 60:g} min)"
        except TargetError as exc:
            data["error"] = str(exc)
        tg.cancel_scope.cancel()
    data["seconds"] = time.monotonic() - started
    data["machine"]["load_end"] = [round(x, 2) for x in os.getloadavg()]
    lines = render(data)
    if data["error"]:
        lines.append("")
        lines.append(f"**The run failed: {data['error']}**")
    if data.get("interrupted"):
        lines.append("")
        lines.append(f"**Interrupted by {data['interrupted']}: the figures are partial.**")
    print("\n".join(lines), flush=True)
    path = args.json
    if path is None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    print(f"\nJSON: {path}", file=sys.stderr)
    return 1 if data["error"] or data.get("interrupted") else 0


def _check_timings(settings: Settings) -> None:
    """Refuse timings our elector (and so the comparison) would reject."""
    from leaderelect import ConfigError
    from leaderelect import Timings as Checked

    t = settings.timings
    try:
        Checked(t.lease_duration, t.renew_deadline, t.retry_period)
    except ConfigError as exc:
        raise SystemExit(f"invalid timings: {exc}") from None


def _revision() -> str:
    """The checkout measured: commit, and whether leaderelect/ had uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "leaderelect"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head} + uncommitted changes in leaderelect/" if dirty else head


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.revision = _revision()
    return anyio.run(_amain, args)
