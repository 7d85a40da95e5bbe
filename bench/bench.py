#!/usr/bin/env python3
"""Runs the benchmarks and writes their raw results as JSON under bench/out/.

    bench.py reload RUN     the reload-under-load table, one run (every system)
    bench.py scale RUN      steward's scale table, one run
    bench.py report         bench/results.md from every run in bench/out/
    bench.py baseline OLD   steward against an older build OLD of itself, side by side in
                            one run: reload under load, 1024-worker start, idle wake-ups
    bench.py unmodified RUN real servers that never send READY=1, default readiness mode
                            (bench/unmodified.py)
    bench.py report-unmodified   only that section of bench/results.md
    bench.py recycle RUN    recycling under load (bench/lifecycle.py)
    bench.py ramp RUN       load ramp against the adaptive worker count (bench/lifecycle.py)
    bench.py report-lifecycle    only those sections of bench/results.md
    bench.py emperor RUN    one vassal's latency while another is reloaded (bench/emperor.py)

`bench/run` installs what is missing, builds, and calls these; see bench/README.md.
"""

import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(HERE, "out")
STEWARD = os.path.join(ROOT, "target", "release", "steward")
CLIENT = os.path.join(HERE, "client", "target", "release", "steward-bench-client")
WORKER = os.path.join(HERE, "client", "target", "release", "steward-bench-worker")
VENV = os.environ.get("BENCH_VENV", "/var/cache/steward-bench-venv")
PYTHON = "/usr/bin/python3"

WORKERS = 4
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "8"))
BOOT_MS = int(os.environ.get("BOOT_MS", "500"))
REQ_MS = int(os.environ.get("REQ_MS", "10"))
RELOADS = int(os.environ.get("BENCH_RELOADS", "20"))
PERIOD_MS = int(os.environ.get("BENCH_PERIOD_MS", "4000"))
# uWSGI's chain reload waits for each worker in turn, checking once a second: about 2 s
# per worker here, so it needs a longer period to finish before the next one.
CHAIN_PERIOD_MS = int(os.environ.get("BENCH_CHAIN_PERIOD_MS", "12000"))
WARMUP_MS = 2000
SCALE = [int(n) for n in os.environ.get("BENCH_SCALE", "1,64,256,1024").split(",")]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def cpu_ms(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 // os.sysconf("SC_CLK_TCK")


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def wait_http(port, deadline_s=60):
    deadline = time.time() + deadline_s
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.") :
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"nothing answers on port {port}")


def systems(port, tmp):
    """Each system: (name, command, trigger given the master pid, period between reloads)."""
    uwsgi = [
        "uwsgi", "--plugin", "python3", "--master", "--processes", str(WORKERS),
        "--http-socket", f"127.0.0.1:{port}", "--pythonpath", HERE,
        "--module", "app:application", "--need-app", "--disable-logging",
        "--die-on-term",
    ]
    fifo = os.path.join(tmp, "uwsgi.fifo")
    return [
        ("uWSGI (SIGHUP)", uwsgi, lambda pid: f"signal:HUP:{pid}", PERIOD_MS),
        ("uWSGI lazy-apps (chain 'c')",
         uwsgi + ["--lazy-apps", "--master-fifo", fifo], lambda pid: f"fifo:{fifo}:c",
         CHAIN_PERIOD_MS),
        ("gunicorn -w 4 (SIGHUP)",
         [os.path.join(VENV, "bin", "gunicorn"), "-w", str(WORKERS), "-b",
          f"127.0.0.1:{port}", "--chdir", HERE, "app:application"],
         lambda pid: f"signal:HUP:{pid}", PERIOD_MS),
        steward_system("steward -w 4 (SIGHUP)", STEWARD, port),
    ]


def steward_system(name, binary, port):
    return (name,
            [binary, "--listen", f"127.0.0.1:{port}", "--workers", str(WORKERS),
             "--ready", "notify", "--", PYTHON, os.path.join(HERE, "serve.py"),
             "app:application"],
            lambda pid: f"signal:HUP:{pid}", PERIOD_MS)


def bench_reload(run):
    results = []
    only = os.environ.get("BENCH_ONLY")
    with tempfile.TemporaryDirectory(prefix="steward-bench-") as tmp:
        for name, command, trigger, period_ms in systems(free_port(), tmp):
            if only and only not in name:
                continue
            log_path = os.path.join(OUT, f"reload-{run}-{len(results)}.log")
            results.append(run_reload(name, command, trigger, period_ms, log_path))
    write(f"reload-{run}.json", dict(facts(), results=results))


def run_reload(name, command, trigger, period_ms, log_path, boot_ms=BOOT_MS):
    """One system through RELOADS reloads under load; its client's result."""
    port = int(next(a for a in command if a.startswith("127.0.0.1:")).split(":")[1])
    log = open(log_path, "w")
    env = dict(os.environ, BOOT_MS=str(boot_ms), REQ_MS=str(REQ_MS))
    load_before = loadavg()
    # A session of its own: whatever the system leaves behind in its process group
    # (gunicorn's workers after a SIGINT) is killed with it at the end.
    master = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                              env=env, cwd=HERE, start_new_session=True)
    try:
        wait_http(port)
        client = subprocess.run(
            [CLIENT, f"127.0.0.1:{port}", str(CONNECTIONS), str(WARMUP_MS),
             str(RELOADS), str(period_ms), trigger(master.pid)],
            capture_output=True, text=True, check=True)
        result = json.loads(client.stdout)
        result.update(system=name, master_rss_kb=rss_kb(master.pid),
                      loadavg_before=load_before, loadavg_after=loadavg())
        print(f"{name}: {result['requests']} requests, "
              f"{result['requests'] - result['ok']} failed, "
              f"completion p50 {result['completion_ms']['p50']} ms", flush=True)
        return result
    finally:
        master.send_signal(signal.SIGINT)
        try:
            master.wait(30)
        except subprocess.TimeoutExpired:
            master.kill()
            master.wait()
        try:
            os.killpg(master.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        log.close()


def ctxt_switches(pid):
    """Voluntary context switches of `pid`: each is one wake-up from a wait."""
    with open(f"/proc/{pid}/status") as f:
        return int(next(l.split()[1] for l in f if l.startswith("voluntary_ctxt_switches")))


def idle_wakeups(binary, seconds=10):
    """How often an idle master with 4 ready workers wakes in `seconds`."""
    port = free_port()
    master = subprocess.Popen(
        [binary, "--listen", f"127.0.0.1:{port}", "--workers", str(WORKERS), "--ready",
         "immediate", "--", WORKER], stderr=subprocess.PIPE, text=True,
        stdout=subprocess.DEVNULL)
    try:
        for line in master.stderr:
            if "generation ready" in line:
                break
        time.sleep(0.5)
        before = ctxt_switches(master.pid)
        time.sleep(seconds)
        return ctxt_switches(master.pid) - before
    finally:
        master.send_signal(signal.SIGINT)
        master.communicate(timeout=60)


def bench_baseline(old):
    """Both builds, interleaved: the reload table's steward row, 1024 workers started and
    reloaded, and idle wake-ups; written to bench/out/baseline.json and printed as a
    markdown table."""
    builds = [("before", os.path.abspath(old)), ("after", STEWARD)]
    rows = {label: dict(build=label) for label, _ in builds}
    for label, binary in builds:
        rows[label]["idle_wakeups_10s"] = idle_wakeups(binary)
    for label, binary in builds:
        name, command, trigger, period = steward_system(f"steward {label}", binary, free_port())
        result = run_reload(name, command, trigger, period,
                            os.path.join(OUT, f"baseline-{label}.log"))
        rows[label].update(
            failed=result["requests"] - result["ok"], requests=result["requests"],
            p99_reload_ms=result["reloading"]["p99_ms"],
            completion_p50_ms=result["completion_ms"]["p50"],
            master_rss_kb=result["master_rss_kb"])
    for ready in ["immediate", "notify"]:
        for label, binary in builds:
            row = scale_row(binary, ready, 1024)
            rows[label][f"start_1024_{ready}_ms"] = round(row["start_ms"])
            rows[label][f"reload_1024_{ready}_ms"] = round(row["reload_ms"])
    write("baseline.json", dict(facts(), rows=list(rows.values())))
    keys = [k for k in rows["after"] if k != "build"]
    print("| build | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for row in rows.values():
        print(f"| {row['build']} | " + " | ".join(str(row[k]) for k in keys) + " |")


def bench_scale(run):
    rows = []
    for ready in ["immediate", "notify"]:
        for n in SCALE:
            rows.append(scale_row(STEWARD, ready, n))
            print(f"scale {ready} {n}: ready in {rows[-1]['start_ms']:.0f} ms, "
                  f"reload in {rows[-1]['reload_ms']:.0f} ms", flush=True)
    write(f"scale-{run}.json", dict(facts(), rows=rows))


def scale_row(binary, ready, n):
    """`n` workers of `binary` started, then reloaded once."""
    port = free_port()
    command = [binary, "--listen", f"127.0.0.1:{port}", "--workers", str(n),
               "--ready", ready, "--worker-reload-mercy", "10s", "--", WORKER]
    if ready == "notify":
        command.append("notify")
    load_before = loadavg()
    started = time.monotonic()
    master = subprocess.Popen(command, stderr=subprocess.PIPE, text=True,
                              stdout=subprocess.DEVNULL)
    try:
        def wait_line(*fragments):
            for line in master.stderr:
                if all(f in line for f in fragments):
                    return time.monotonic()
            raise RuntimeError(f"steward ended before {fragments}")

        ready_at = wait_line("generation ready", "generation=1 ")
        rss_ready, cpu_ready = rss_kb(master.pid), cpu_ms(master.pid)
        hup = time.monotonic()
        master.send_signal(signal.SIGHUP)
        reloaded = wait_line("reload complete", "generation=2 ")
        return dict(
            ready=ready, workers=n, start_ms=(ready_at - started) * 1000,
            reload_ms=(reloaded - hup) * 1000, rss_kb=rss_ready,
            rss_after_reload_kb=rss_kb(master.pid),
            cpu_start_ms=cpu_ready, cpu_total_ms=cpu_ms(master.pid),
            loadavg_before=load_before, loadavg_after=loadavg())
    finally:
        master.send_signal(signal.SIGINT)
        master.communicate(timeout=60)


def version(command):
    try:
        out = subprocess.run(command, capture_output=True, text=True)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError):
        return "missing"


def facts():
    with open("/proc/cpuinfo") as f:
        model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    return dict(
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        cpus=os.cpu_count(), cpu_model=model, kernel=platform.release(),
        steward=version([STEWARD, "--version"]), uwsgi=version(["uwsgi", "--version"]),
        gunicorn=version([os.path.join(VENV, "bin", "gunicorn"), "--version"]),
        python=version([PYTHON, "--version"]),
        commit=version(["git", "-C", ROOT, "describe", "--always", "--dirty"]),
        boot_ms=BOOT_MS, req_ms=REQ_MS, connections=CONNECTIONS, reloads=RELOADS,
        period_ms=PERIOD_MS, workers=WORKERS)


def write(name, data):
    with open(os.path.join(OUT, name), "w") as f:
        json.dump(data, f, indent=1)
    print(f"wrote bench/out/{name}")


def main():
    os.makedirs(OUT, exist_ok=True)
    what = sys.argv[1]
    if what == "reload":
        bench_reload(sys.argv[2])
    elif what == "scale":
        bench_scale(sys.argv[2])
    elif what == "baseline":
        bench_baseline(sys.argv[2])
    elif what == "unmodified":
        import unmodified
        unmodified.bench_unmodified(sys.argv[2])
    elif what == "emperor":
        import emperor
        emperor.bench_emperor(sys.argv[2])
    elif what in ("recycle", "ramp"):
        import lifecycle
        getattr(lifecycle, f"bench_{what}")(sys.argv[2])
    elif what == "report-lifecycle":
        import report_lifecycle
        report_lifecycle.update(OUT, os.path.join(HERE, "results.md"))
    elif what == "report":
        import report
        report.main(OUT, os.path.join(HERE, "results.md"))
    elif what == "report-unmodified":
        import report
        report.update_unmodified(OUT, os.path.join(HERE, "results.md"))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
