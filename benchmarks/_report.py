"""Figures from the results: percentiles, per-minute rates, and the tables printed (Markdown)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

VERBS = ("get", "update", "create", "watch", "list", "patch")
TARGETS = {
    "handover_p50": 0.020,
    "handover_p99": 0.100,
    "failover_excess": 0.100,
}


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile, interpolated linearly between the closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "max": max(values) if values else math.nan,
        "min": min(values) if values else math.nan,
        "mean": sum(values) / len(values) if values else math.nan,
    }


def ms(seconds: float, signed: bool = False) -> str:
    if math.isnan(seconds):
        return "-"
    value = seconds * 1000
    digits = 0 if abs(value) >= 10 else 1
    return f"{value:+.{digits}f} ms" if signed else f"{value:.{digits}f} ms"


def rate(count: float, window: float) -> float:
    return count * 60.0 / window if window > 0 else math.nan


def fmt_rate(value: float) -> str:
    if math.isnan(value):
        return "-"
    if value == 0:
        return "0"
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def ratio(value: float, base: float) -> str:
    if math.isnan(value) or math.isnan(base):
        return "-"
    if base == 0:
        return "-" if value == 0 else "∞"
    return f"{value / base:.1f}x"


def table(header: Sequence[str], rows: Iterable[Sequence[str]], align: str = "") -> list[str]:
    """A Markdown table; ``align`` has one ``l`` or ``r`` per column (default: l then r)."""
    rows = [list(r) for r in rows]
    columns = len(header)
    align = align or "l" + "r" * (columns - 1)
    widths = [max(len(str(x)) for x in [header[i], *(r[i] for r in rows)]) for i in range(columns)]

    def line(cells: Sequence[str]) -> str:
        out = []
        for i, cell in enumerate(cells):
            out.append(cell.ljust(widths[i]) if align[i] == "l" else cell.rjust(widths[i]))
        return "| " + " | ".join(out) + " |"

    rule = (
        "|"
        + "|".join(
            ("-" * (w + 1) + ":" if a == "r" else ":" + "-" * (w + 1))
            for w, a in zip(widths, align, strict=True)
        )
        + "|"
    )
    return [line(header), rule, *(line(r) for r in rows)]


def _verbs(counts: dict[str, float], window: float) -> str:
    parts = [f"{fmt_rate(rate(counts[v], window))} {v}" for v in VERBS if counts.get(v)]
    parts += [f"{fmt_rate(rate(n, window))} {v}" for v, n in counts.items() if v not in VERBS and n]
    return ", ".join(parts) if parts else "0"


def render(data: dict[str, Any]) -> list[str]:
    """The printed report, from the JSON document."""
    out: list[str] = []
    labels: dict[str, str] = data["implementations"]
    timings = data["settings"]["timings"]
    duration = timings["lease_duration"]
    machine = data["machine"]
    out.append(f"## leaderelect election benchmark — {data['started']}")
    out.append("")
    out.append(f"- server: {data['target']}")
    out.append(f"- measured: leaderelect {data.get('revision', 'unknown')}")
    out.append(
        f"- machine: {machine['cpus']} x {machine['cpu_model']}, {machine['memory_gb']} GB, "
        f"Python {machine['python']}, {machine['platform']}"
    )
    out.append(
        f"- timings (all implementations): lease {duration:g} s, renew deadline "
        f"{timings['renew_deadline']:g} s, retry period {timings['retry_period']:g} s"
    )
    out.append(
        f"- load average (1, 5, 15 min): {machine['load_start']} at the start, "
        f"{machine['load_end']} at the end; run took {data['seconds'] / 60:.1f} min"
    )
    for note in data.get("notes", []):
        out.append(f"- {note}")

    handovers: dict[str, Any] = data["handover"]
    if handovers:
        out.append("")
        out.append(
            "### Graceful handover: the leader leaves its work → the next leader's work starts"
        )
        out.append("")
        rows = []
        base = handovers.get("ours")
        for key, r in handovers.items():
            s = summary(r["samples"])
            rows.append(
                [
                    labels[key],
                    f"{s['n']}/{r['requested']}",
                    ms(s["p50"]),
                    ms(s["p99"]),
                    ms(s["max"]),
                    ratio(s["p50"], summary(base["samples"])["p50"]) if base else "-",
                    f"{r['load_before'][0]:.2f}→{r['load_after'][0]:.2f}",
                    _remark(r),
                ]
            )
        out += table(
            ["implementation", "n", "p50", "p99", "max", "p50 vs ours", "load", "notes"],
            rows,
            "lrrrrrrl",
        )

    failovers: dict[str, Any] = data["failover"]
    if failovers:
        out.append("")
        out.append(
            f"### Crash failover: SIGKILL right after a renewal → the next leader's work starts, "
            f"beyond the lease duration ({duration:g} s)"
        )
        out.append("")
        rows = []
        base = failovers.get("ours")
        for key, r in failovers.items():
            s = summary(r["samples"])
            since = summary(r["since_renewal"])
            rows.append(
                [
                    labels[key],
                    f"{s['n']}/{r['requested']}",
                    ms(s["p50"], True),
                    ms(s["p99"], True),
                    ms(s["max"], True),
                    ms(since["p50"], True),
                    ms(since["max"], True),
                    f"{r['load_before'][0]:.2f}→{r['load_after'][0]:.2f}",
                    _remark(r),
                ]
            )
        out += table(
            [
                "implementation",
                "n",
                "excess p50",
                "p99",
                "max",
                "from last renewal p50",
                "max",
                "load",
                "notes",
            ],
            rows,
            "lrrrrrrrl",
        )

    phases: list[dict[str, Any]] = data["load"]
    if phases:
        out.append("")
        out.append("### API requests per minute in steady state (by verb), and each process's cost")
        out.append("")
        rows = []
        for phase in phases:
            for key, r in phase["results"].items():
                rows.append(_load_row(labels[key], phase, r))
        out += table(
            [
                "implementation",
                "followers",
                "leader req/min",
                "each follower req/min: mean (max)",
                "all followers req/min",
                "leader CPU s/min",
                "leader peak RSS",
                "follower CPU s/min per elector: mean (max)",
                "follower peak RSS per process",
                "notes",
            ],
            rows,
            "lrllrrrrrl",
        )
        out.append("")
        for phase in phases:
            for group in phase["groups"]:
                totals = group.get("server_totals")
                together = len(group["impls"]) == len(phase["results"])
                who = "all fleets" if together else ", ".join(labels[k] for k in group["impls"])
                line = (
                    f"- {phase['followers']} followers, {who}: window {group['window']:.1f} s, "
                    f"load {group['load_before'][0]:.2f}→{group['load_after'][0]:.2f}, "
                    f"orchestrator CPU {group['orchestrator_cpu_seconds']:.1f} s"
                )
                if totals:
                    line += "; server's own count of client requests: " + _verbs(
                        totals, group["window"]
                    )
                out.append(line)
        out.append(
            "- the orchestrator runs the embedded server (if any) and reads every candidate's "
            "output"
        )

    ratios = _ratios(data)
    if ratios:
        out.append("")
        out.append("### Ratios to leaderelect (watch)")
        out.append("")
        out += ratios
    checks = _targets(data)
    if checks:
        out.append("")
        out.append("### leaderelect (watch) against its targets")
        out.append("")
        out += checks
    return out


def _remark(r: dict[str, Any]) -> str:
    parts = []
    released = [x for x in r.get("released", []) if x is not None]
    if released:
        s = summary(released)
        parts.append(
            f"release written {ms(s['p50'])} (p99 {ms(s['p99'])}, max {ms(s['max'])}) "
            "after the work ended"
        )
    if r.get("error"):
        parts.append("FAILED: " + r["error"].splitlines()[0])
    if r.get("unexpected"):
        parts.append(f"{len(r['unexpected'])} unexpected: {r['unexpected'][0]}")
    return "; ".join(parts)


def follower_rates(r: dict[str, Any]) -> tuple[dict[str, float], dict[str, float], float]:
    """Per-verb mean and max per follower, and the followers' total, per minute."""
    window = r["window"]
    followers = r["follower_requests"]
    verbs = sorted({v for c in followers.values() for v in c})
    mean = (
        {
            v: rate(sum(c.get(v, 0) for c in followers.values()) / len(followers), window)
            for v in verbs
        }
        if followers
        else {}
    )
    high = {v: rate(max(c.get(v, 0) for c in followers.values()), window) for v in verbs}
    total = rate(sum(sum(c.values()) for c in followers.values()), window)
    return mean, high, total


def _load_row(label: str, phase: dict[str, Any], r: dict[str, Any]) -> list[str]:
    if r.get("error"):
        return [label, str(phase["followers"]), "FAILED: " + r["error"].splitlines()[0]] + [""] * 7
    window = r["window"]
    mean, high, total = follower_rates(r)
    each = (
        ", ".join(f"{fmt_rate(mean[v])} ({fmt_rate(high[v])}) {v}" for v in mean if high[v] > 0)
        or "0"
    )
    leader_procs = [p for p in r["processes"] if p["leader"]]
    follower_procs = [p for p in r["processes"] if not p["leader"]]
    leader_cpu = f"{rate(leader_procs[0]['cpu_seconds'], window):.2f}" if leader_procs else "-"
    leader_rss = f"{leader_procs[0]['peak_rss_mb']:.0f} MB" if leader_procs else "-"
    per_elector = [rate(p["cpu_seconds"] / p["electors"], window) for p in follower_procs]
    follower_cpu = (
        f"{sum(per_elector) / len(per_elector):.3f} ({max(per_elector):.3f})"
        if per_elector
        else "-"
    )
    sizes = sorted({p["electors"] for p in follower_procs})
    rss = [p["peak_rss_mb"] for p in follower_procs]
    follower_rss = f"{sum(rss) / len(rss):.0f} MB" if rss else "-"
    if sizes and sizes != [1]:
        follower_rss += f" ({'/'.join(map(str, sizes))} electors/process)"
    notes = []
    if r["leader_changes"]:
        notes.append(f"{r['leader_changes']} leader change(s) in the window")
    if r.get("unexpected"):
        notes.append(f"{len(r['unexpected'])} unexpected: {r['unexpected'][0]}")
    if r.get("counted_by", "").startswith("client"):
        notes.append("counted " + r["counted_by"])
    return [
        label,
        str(phase["followers"]),
        _verbs(r["leader_requests"], window),
        each,
        fmt_rate(total),
        leader_cpu,
        leader_rss,
        follower_cpu,
        follower_rss,
        "; ".join(notes),
    ]


def _ratios(data: dict[str, Any]) -> list[str]:
    labels = data["implementations"]
    keys = [k for k in labels if k != "ours"]
    if "ours" not in labels or not keys:
        return []
    rows = []
    handovers = data["handover"]
    failovers = data["failover"]
    phases = data["load"]

    def quantile(results: dict[str, Any], key: str, q: float) -> float:
        r = results.get(key)
        return percentile(r["samples"], q) if r and r["samples"] else math.nan

    def total(r: dict[str, Any]) -> float:
        return rate(sum(r["leader_requests"].values()), r["window"]) + follower_rates(r)[2]

    for key in keys:
        row = [labels[key]]
        row.append(ratio(quantile(handovers, key, 50), quantile(handovers, "ours", 50)))
        row.append(ratio(quantile(handovers, key, 99), quantile(handovers, "ours", 99)))
        difference = quantile(failovers, key, 50) - quantile(failovers, "ours", 50)
        row.append(ms(difference, True))
        for phase in phases:
            ours = phase["results"].get("ours")
            other = phase["results"].get(key)
            if not ours or not other or ours.get("error") or other.get("error"):
                row.append("-")
                continue
            row.append(f"{fmt_rate(total(other))} ({ratio(total(other), total(ours))})")
        rows.append(row)
    ours_row = ["leaderelect (watch), for reference", "1x", "1x", "0 ms"]
    for phase in phases:
        ours = phase["results"].get("ours")
        ours_row.append(fmt_rate(total(ours)) if ours and not ours.get("error") else "-")
    rows.insert(0, ours_row)
    header = ["implementation", "handover p50", "handover p99", "failover excess p50, difference"]
    header += [f"all requests/min, {phase['followers']} followers (ratio)" for phase in phases]
    return table(header, rows, "l" + "r" * (len(header) - 1))


def _targets(data: dict[str, Any]) -> list[str]:
    out = []
    timings = data["settings"]["timings"]
    handover = data["handover"].get("ours")
    if handover and handover["samples"]:
        s = summary(handover["samples"])
        out.append(
            f"- graceful handover p50 {ms(s['p50'])} (target ≤ 20 ms): "
            f"{'met' if s['p50'] <= TARGETS['handover_p50'] else 'MISSED'}; "
            f"p99 {ms(s['p99'])} (target ≤ 100 ms): "
            f"{'met' if s['p99'] <= TARGETS['handover_p99'] else 'MISSED'}"
        )
    failover = data["failover"].get("ours")
    if failover and failover["samples"]:
        worst = max(failover["samples"])
        out.append(
            f"- crash failover at most {ms(worst, True)} beyond the lease duration "
            f"(target ≤ +100 ms): {'met' if worst <= TARGETS['failover_excess'] else 'MISSED'}"
            f"; p99 {ms(percentile(failover['samples'], 99), True)}"
        )
    for phase in data["load"]:
        r = phase["results"].get("ours")
        if not r or r.get("error"):
            continue
        if r.get("unexpected"):
            out.append(
                f"- {phase['followers']} followers: not judged; the phase had "
                f"{len(r['unexpected'])} unexpected event(s): {r['unexpected'][0]}"
            )
            continue
        mean, high, _ = follower_rates(r)
        polls = {v: high[v] for v in ("get", "update", "create", "list") if high.get(v)}
        writes = rate(r["leader_requests"].get("update", 0), r["window"])
        expected = 60.0 / timings["retry_period"]
        found = ", ".join(f"{fmt_rate(n)} {v}" for v, n in polls.items())
        out.append(
            f"- {phase['followers']} followers: followers' GET/PUT per minute "
            + ("0 (target 0): met" if not polls else f"{found} at most (target 0): MISSED")
            + f"; watch requests in the window {fmt_rate(mean.get('watch', 0.0))}/min per "
            "follower (by design one every 240-300 s); "
            f"leader {writes:.1f} writes/min (one per retry period = {expected:.0f}/min)"
        )
    return out
