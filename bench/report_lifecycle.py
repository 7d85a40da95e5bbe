"""The "Recycling under load", "Load ramp (cheaper)" and "Emperor latency isolation"
sections of bench/results.md, from the recycle-*, ramp-* (bench/lifecycle.py) and
emperor-*.json (bench/emperor.py) runs: the median of the runs per cell, with the spread
(min-max)."""

import os

from report import load, summary

FAILURES = ["refused", "reset", "timeout", "non200", "other"]


def by_system(runs):
    """[(name, [result of each run])], in the order the runs have them."""
    names = []
    for run in runs:
        for r in run["results"]:
            if r["system"] not in names:
                names.append(r["system"])
    return [(n, [r for run in runs for r in run["results"] if r["system"] == n]) for n in names]


def latency_cells(rows, part=lambda r: r["all"]):
    return " / ".join(summary([part(r)["latency"][k] for r in rows], "{:.1f}")
                      for k in ["p50_ms", "p99_ms", "max_ms"])


def failed_cell(rows):
    total = summary([r["all"]["requests"] - r["all"]["ok"] for r in rows])
    kinds = [k for k in FAILURES if any(r["all"][k] for r in rows)]
    if not kinds:
        return total
    return total + " (" + ", ".join(f"{k} {summary([r['all'][k] for r in rows])}" for k in kinds) + ")"


def loads(runs):
    return "; ".join(
        f"run {i + 1}: " + ", ".join(
            f"{r['system'].split(' ')[0].rstrip(',')} {r['loadavg_before'].split()[0]}"
            f"->{r['loadavg_after'].split()[0]}" for r in run["results"])
        for i, run in enumerate(runs))


def recycle_table(runs):
    lines = [
        "| system | requests | recycles: new pids / log lines | failed | worst gap ms "
        "| p50 / p99 / max ms |",
        "|---|---|---|---|---|---|",
    ]
    for name, rows in by_system(runs):
        lines.append(
            f"| {name} | {summary([r['all']['requests'] for r in rows])} "
            f"| {summary([r['recycles_pids'] for r in rows])} / "
            f"{summary([r['recycles_logged'] for r in rows])} "
            f"| {failed_cell(rows)} | {summary([r['worst_gap_ms'] for r in rows], '{:.1f}')} "
            f"| {latency_cells(rows)} |")
    return "\n".join(lines)


def recycle_section(runs):
    if not runs:
        return "## Recycling under load\n\n(not run: `bench/run recycle RUN`)"
    f = runs[0]
    return f"""## Recycling under load

The reload table's app and load ({f["workers"]} workers, app import {f["boot_ms"]} ms, request
{f["req_ms"]} ms, {f["connections"]} closed-loop connections) for {f["seconds"]} s, no reload: the
workers are recycled instead, every {f["max_requests"]} requests each (steward: the worker asks with
`X_STEWARD_RECYCLE=`, [serve.py](serve.py) with MAX_REQUESTS; the others: `--max-requests`),
or, with the app leaking {f["leak_kb"]} KB per request (LEAK_KB), once a worker's RSS passes
{f["rss_mb"]} MB (gunicorn has no memory limit), or once it has lived {next((r["lifetime_s"] for r in runs if "lifetime_s" in r), "?")} s
(`max-worker-lifetime`; gunicorn has none either). uWSGI runs with `--min-worker-lifetime 0`
(by default it recycles no worker younger than 60 s). Recycles: new pids that answered
the client, and the system's own log lines (steward `worker-recycled`, gunicorn
"Autorestarting worker", uWSGI "The work of process N is done" or "lifetime reached"); a row where either is 0
fails the run. Worst gap: the longest time with requests outstanding and none answered.
{len(runs)} run(s): {", ".join(sorted({r["date"] for r in runs}))}.

{recycle_table(runs)}

Load average (1 min) before -> after each system: {loads(runs)}."""


def ramp_table(runs):
    steps = runs[0]["results"][0]["steps"]
    clients = " / ".join(str(s["connections"]) for s in steps)
    lines = [
        f"| system | requests | failed | p50 / p99 / max ms | p99 per step ({clients} clients) ms "
        f"| peak workers | mean workers per step ({clients} clients) | worker-seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, rows in by_system(runs):
        per_step_p99 = " / ".join(
            summary([r["steps"][i]["result"]["latency"]["p99_ms"] for r in rows], "{:.1f}")
            for i in range(len(steps)))
        per_step_workers = " / ".join(
            summary([r["mean_workers_per_step"][i] for r in rows], "{:.1f}")
            for i in range(len(steps)))
        lines.append(
            f"| {name} | {summary([r['all']['requests'] for r in rows])} | {failed_cell(rows)} "
            f"| {latency_cells(rows)} | {per_step_p99} "
            f"| {summary([r['peak_workers'] for r in rows])} | {per_step_workers} "
            f"| {summary([r['worker_seconds'] for r in rows])} |")
    return "\n".join(lines)


def ramp_section(runs):
    if not runs:
        return "## Load ramp (cheaper)\n\n(not run: `bench/run ramp RUN`)"
    f = runs[0]
    return f"""## Load ramp (cheaper)

The same app (request {f["req_ms"]} ms, import {f["boot_ms"]} ms) under a ramp of closed-loop
connections, `{f["ramp"]}` (seconds:connections), at most 8 workers. steward: `--cheaper 1
--workers 8 --cheaper-step 2 --cheaper-overload 1s --cheaper-idle 2s`; uWSGI: `--cheaper 1
--processes 8 --cheaper-algo backlog --cheaper-step 2 --cheaper-overload 1` (every second:
more than 1 connection queued starts 2 more, none queued retires one), with the app
preloaded in its master (a new worker is a fork) and with `--lazy-apps` (a new worker
imports the app, as steward's exec'd workers do); steward with a fixed 8 as reference.
Workers: the master's live children, sampled every 100 ms from /proc; worker-seconds
integrates them over the run. {len(runs)} run(s): {", ".join(sorted({r["date"] for r in runs}))}.

{ramp_table(runs)}

Load average (1 min) before -> after each system: {loads(runs)}."""


def emperor_section(runs):
    if not runs:
        return "## Emperor latency isolation\n\n(not run: `bench/run emperor RUN`)"
    f = runs[0]
    step = lambda i: [r["steps"][i]["result"] for r in runs]
    lat = lambda i, k: summary([s["latency"][k] for s in step(i)], "{:.1f}")
    rows = [
        "| loaded vassal, while the touched one | requests | failed | p50 / p99 / max ms |",
        "|---|---|---|---|",
    ]
    for i, what in enumerate(["is left alone", f"is touched every {f['touch_ms']} ms"]):
        rows.append(f"| {what} | {summary([s['requests'] for s in step(i)])} "
                    f"| {summary([s['requests'] - s['ok'] for s in step(i)])} "
                    f"| {lat(i, 'p50_ms')} / {lat(i, 'p99_ms')} / {lat(i, 'max_ms')} |")
    return f"""## Emperor latency isolation

`steward emperor DIR` with {f["vassals"]} vassals: "loaded" serves the benchmark app (2 workers,
request {f["req_ms"]} ms) under {f["steps"][0]["connections"]} closed-loop connections, "touched" serves the same
app (2 workers, import {f["boot_ms"]} ms), the others one idle `steward-demo` worker each. The
client runs {f["steps"][0]["seconds"]} s with the touched vassal left alone, then {f["steps"][1]["seconds"]} s while its file is
touched every {f["touch_ms"]} ms (each touch: the emperor checks the file and reloads the vassal, whose
new Python workers start beside the old). Reloads asked per run: {summary([r["reloads_asked"] for r in runs])};
emperor ready (all vassals) after {summary([r["emperor_ready_s"] for r in runs], "{:.1f}")} s,
the emperor's RSS then {summary([r["emperor_rss_kb"] / 1024 for r in runs if "emperor_rss_kb" in r], "{:.1f}")} MB
({summary([r["emperor_rss_after_kb"] / 1024 for r in runs if "emperor_rss_after_kb" in r], "{:.1f}")} MB after the touching).
{len(runs)} run(s): {", ".join(sorted({r["date"] for r in runs}))}; load average before -> after:
{"; ".join(f"{r['loadavg_before'].split()[0]}->{r['loadavg_after'].split()[0]}" for r in runs)}.

{chr(10).join(rows)}"""


def sections(out):
    """The three tables, then their hand-written reading (notes-lifecycle.md)."""
    notes = os.path.join(os.path.dirname(os.path.abspath(__file__)), "notes-lifecycle.md")
    reading = open(notes).read().strip() if os.path.exists(notes) else ""
    return (recycle_section(load(out, "recycle")) + "\n\n"
            + ramp_section(load(out, "ramp")) + "\n\n"
            + emperor_section(load(out, "emperor")) + "\n\n" + reading).strip()


def update(out, target):
    """Replaces (or inserts before the notes) only these sections of `target`."""
    text = open(target).read()
    start = text.find("## Recycling under load")
    if start < 0:
        start = end = text.find("## Notes")
    else:
        last = max(text.find(h, start) for h in
                   ["## Load ramp", "## Emperor latency", "## Reading the lifecycle tables"])
        end = text.find("\n## ", last + 1) + 1
    text = text[:start] + sections(out) + "\n\n" + text[end:]
    with open(target, "w") as f:
        f.write(text)
    print(f"updated {target}")
