"""Writes bench/results.md from the raw runs in bench/out/: per table, the median of the
runs and their spread (min-max), the machine facts and load, the goals met or missed,
then the hand-written notes of bench/notes.md."""

import glob
import json
import os
import statistics


def load(out, kind):
    runs = []
    for path in sorted(glob.glob(os.path.join(out, f"{kind}-*.json"))):
        if "test" in os.path.basename(path):
            continue
        with open(path) as f:
            runs.append(json.load(f))
    return runs


def summary(values, fmt="{:.0f}"):
    """Median, and the spread when there are several runs."""
    values = [v for v in values if v is not None and v == v]
    if not values:
        return "n/a"
    median = fmt.format(statistics.median(values))
    if len(values) == 1:
        return median
    return f"{median} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def reload_tables(runs):
    systems = []
    for run in runs:
        for r in run["results"]:
            if r["system"] not in systems:
                systems.append(r["system"])

    def per_system(name, get):
        return [get(r) for run in runs for r in run["results"] if r["system"] == name]

    lines = [
        "| system | requests | failed: refused / reset / timeout / non-200 / other "
        "| steady p50 / p99 / max ms | during reload p50 / p99 / max ms "
        "| reload completion p50 / max ms | incomplete | master RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in systems:
        get = lambda f: per_system(name, f)
        fails = " / ".join(summary(get(lambda r, k=k: r[k]))
                           for k in ["refused", "reset", "timeout", "non200", "other"])
        lat = lambda part: " / ".join(
            summary(get(lambda r, k=k: r[part][k]), "{:.1f}")
            for k in ["p50_ms", "p99_ms", "max_ms"])
        lines.append(
            f"| {name} | {summary(get(lambda r: r['requests']))} | {fails} "
            f"| {lat('steady')} | {lat('reloading')} "
            f"| {summary(get(lambda r: r['completion_ms']['p50']))} / "
            f"{summary(get(lambda r: r['completion_ms']['max']))} "
            f"| {summary(get(lambda r: r['incomplete']))} "
            f"| {summary(get(lambda r: r['master_rss_kb'] / 1024), '{:.1f}')} |")
    loads = "; ".join(
        f"run {i + 1}: " + ", ".join(f"{r['system'].split(' ')[0]} {r['loadavg_before'].split()[0]}"
                                     f"->{r['loadavg_after'].split()[0]}" for r in run["results"])
        for i, run in enumerate(runs))
    client = summary([r["client_cpu_us_per_request"] for run in runs for r in run["results"]])
    return "\n".join(lines), loads, client


def scale_table(runs):
    keys = []
    for run in runs:
        for r in run["rows"]:
            if (r["ready"], r["workers"]) not in keys:
                keys.append((r["ready"], r["workers"]))
    lines = [
        "| --ready | workers | start to ready ms | reload ms | master CPU at ready ms "
        "| master CPU after reload ms | master RSS kB | RSS per worker B | CPU per worker (start+reload) us |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for ready, n in keys:
        rows = [r for run in runs for r in run["rows"] if (r["ready"], r["workers"]) == (ready, n)]
        base = {id(run): next((r for r in run["rows"] if r["ready"] == ready and r["workers"] == 1), None)
                for run in runs}
        per_worker_rss = []
        for run in runs:
            one = next((r for r in run["rows"] if r["ready"] == ready and r["workers"] == 1), None)
            this = next((r for r in run["rows"] if (r["ready"], r["workers"]) == (ready, n)), None)
            if one and this and n > 1:
                per_worker_rss.append((this["rss_kb"] - one["rss_kb"]) * 1024 / (n - 1))
        col = lambda k, fmt="{:.0f}": summary([r[k] for r in rows], fmt)
        lines.append(
            f"| {ready} | {n} | {col('start_ms')} | {col('reload_ms')} | {col('cpu_start_ms')} "
            f"| {col('cpu_total_ms')} | {col('rss_kb')} | {summary(per_worker_rss) if n > 1 else '-'} "
            f"| {summary([r['cpu_total_ms'] * 1000 / (2 * n) for r in rows]) if n > 1 else '-'} |")
    loads = "; ".join(
        f"run {i + 1}: " + ", ".join(f"{r['ready']} {r['workers']}: {r['loadavg_before'].split()[0]}"
                                     for r in run["rows"])
        for i, run in enumerate(runs))
    return "\n".join(lines), loads


def goals(reload_runs, scale_runs, boot_ms):
    steward = [r for run in reload_runs for r in run["results"] if r["system"].startswith("steward")]
    if not steward:
        return "(no steward run)"
    failed = [r["requests"] - r["ok"] for r in steward]
    ratio = [r["reloading"]["p99_ms"] / r["steady"]["p99_ms"] for r in steward]
    completion = [r["completion_ms"]["p50"] for r in steward]
    completion_max = [r["completion_ms"]["max"] for r in steward]
    rss = [r["master_rss_kb"] / 1024 for r in steward]
    ready_1024 = [r["start_ms"] for run in scale_runs for r in run["rows"] if r["workers"] == 1024]
    verdict = lambda ok: "met" if ok else "**missed**"
    rows = [
        ("zero failed requests across all reloads", f"{sum(failed)} failed in {len(steward)} runs",
         sum(failed) == 0),
        ("p99 during reloads within 1.5x of steady state",
         "ratio " + summary(ratio, "{:.2f}"), max(ratio) <= 1.5),
        (f"reload completion within boot time + 50 ms ({boot_ms + 50} ms)",
         f"p50 {summary(completion)} ms, max {summary(completion_max)} ms",
         max(completion) <= boot_ms + 50),
        ("master RSS under 5 MB", summary(rss, "{:.1f}") + " MB", max(rss) < 5),
        ("1024 workers ready in under 2 s",
         summary(ready_1024) + " ms (both --ready modes)" if ready_1024 else "n/a",
         bool(ready_1024) and max(ready_1024) < 2000),
    ]
    lines = ["| goal | measured (median, spread) | |", "|---|---|---|"]
    lines += [f"| {g} | {m} | {verdict(ok)} |" for g, m, ok in rows]
    return "\n".join(lines)


def unmodified_table(runs):
    """The "unmodified servers" rows: one per server, medians over the runs."""
    names = []
    for run in runs:
        for r in run["results"]:
            if r["system"] not in names:
                names.append(r["system"])
    lines = [
        "| server | ready | requests | failed | max gap (ms) | new generation ready p50 (max) "
        "(ms) | completion p50 (max) (ms) | own start-up alone (ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        rows = [r for run in runs for r in run["results"] if r["system"] == name]
        get = lambda f: summary([f(r) for r in rows])
        lines.append(
            f"| {name} | {rows[0]['ready']} | {get(lambda r: r['requests'])} | "
            f"{get(lambda r: r['requests'] - r['ok'])} | {get(lambda r: r['max_gap_ms'])} | "
            f"{ready_cell(rows)} | "
            f"{get(lambda r: r['completion_ms']['p50'])} ({get(lambda r: r['completion_ms']['max'])}) | "
            f"{get(lambda r: r['own_start_up_ms'])} |")
    return "\n".join(lines)


def ready_cell(rows):
    ready = [r["ready_after_ms"] for r in rows if r.get("ready_after_ms")]
    if not ready:
        return "n/a"
    return f"{summary([x['p50'] for x in ready])} ({summary([x['max'] for x in ready])})"


def unmodified_section(runs):
    if not runs:
        return "## Unmodified servers\n\n(not run: `bench/bench.py unmodified RUN`)"
    facts = runs[0]
    return f"""## Unmodified servers

Real servers that never send READY=1 (`tests/servers/`), each with an app that takes
{facts["boot_ms"]} ms to start, {facts["workers"]} workers, under steward's default readiness mode
(gunicorn with `--preload`, see the README), {facts["reloads"]} SIGHUP reloads under
{facts["connections"]} closed-loop connections, {len(runs)} run(s) on {", ".join(sorted({r["date"] for r in runs}))}
(`bench.py unmodified`). Max gap: the longest time in which no request at all was
answered. Own start-up: the server alone, spawned on a socket at fd 3, to its first
answer (median of 3). Completion includes the 4 new workers starting at once beside
the serving ones on this 2-core machine while the load keeps it busy, which a lone
start-up does not pay: the interpreters' imports are CPU-bound (Node's start-up here is
a busy loop, 4 of them on 2 cores), Go's start-up is not, and there the new generation
is seen ready as soon as a lone one would be, so what steward adds is within the noise
(its look runs every 20 ms). The last row is uvicorn under another master, gunicorn
with its UvicornWorker reloaded by SIGHUP, for comparison.

{unmodified_table(runs)}"""


def update_unmodified(out, target):
    """Replaces only the unmodified-servers section of `target` (the other tables keep
    their runs)."""
    section = unmodified_section(load(out, "unmodified"))
    text = open(target).read()
    start = text.find("## Unmodified servers")
    if start < 0:
        start = text.find("## Notes")
        text = text[:start] + section + "\n\n" + text[start:]
    else:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + "\n" + text[end:]
    with open(target, "w") as f:
        f.write(text)
    print(f"updated {target}")


def main(out, target):
    import report_lifecycle  # it imports this module's helpers
    reload_runs, scale_runs = load(out, "reload"), load(out, "scale")
    unmodified_runs = load(out, "unmodified")
    facts = (reload_runs or scale_runs)[0]
    dates = sorted({run["date"] for run in reload_runs + scale_runs})
    reload_md, reload_loads, client = reload_tables(reload_runs) if reload_runs else ("", "", "")
    scale_md, scale_loads = scale_table(scale_runs) if scale_runs else ("", "")
    notes_path = os.path.join(os.path.dirname(target), "notes.md")
    notes = open(notes_path).read() if os.path.exists(notes_path) else ""
    text = f"""# Benchmark results

Generated by `bench/run` (`bench/bench.py report`) from {len(reload_runs)} run(s) of the reload
table and {len(scale_runs)} of the scale table; each cell is the median of the runs, with the
spread (min-max) in parentheses. Goals and method: [README.md](README.md).

## Machine

- runs: {", ".join(dates)}
- {facts["cpus"]} CPUs ({facts["cpu_model"]}), Linux {facts["kernel"]}
- {facts["steward"]} (commit {facts.get("commit", "?")}); uWSGI {facts["uwsgi"]}; gunicorn {facts["gunicorn"]}; {facts["python"]}
- shared with other engineers' builds and tests: the load average (1 min) around each
  system is noted below the tables.

## Goals (steward)

{goals(reload_runs, scale_runs, facts["boot_ms"]) if reload_runs else ""}

## Reload under load

{facts["workers"]} workers, app import {facts["boot_ms"]} ms (BOOT_MS), request {facts["req_ms"]} ms
(REQ_MS), {facts["connections"]} closed-loop connections (one request per connection),
{facts["reloads"]} reloads per system, one every {facts["period_ms"]} ms (uWSGI's chain reload:
every 12 s, it needs about 6 s). "During reload" is a request that overlaps the time from
the trigger to completion; completion is the trigger to the first answer from the new
generation after the last one from the old.

{reload_md}

Client CPU per request: {client} us (the client's own overhead; at ~{1000 * facts["connections"] // (facts["req_ms"] + 10)} requests/s
it is a few percent of one core).

Load average (1 min) before -> after each system: {reload_loads}.

## Scale (steward)

Trivial workers (`steward-bench-worker`, a Rust binary that parks; with `notify` it first
sends READY=1). Start: steward's exec to "generation ready"; reload: SIGHUP to "reload
complete". CPU is the master's utime+stime (10 ms ticks); RSS per worker is the master's
growth over the 1-worker case, divided by the workers added.

{scale_md}

Load average (1 min) before each row: {scale_loads}.

{unmodified_section(unmodified_runs)}

{report_lifecycle.sections(out)}

{notes}"""
    with open(target, "w") as f:
        f.write(text)
    print(f"wrote {target}")
