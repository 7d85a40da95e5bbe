"""Worker lifecycle under load: the "Recycling under load" and "Load ramp (cheaper)" tables.

    bench.py recycle RUN    every system recycling its 4 workers often, fixed-duration load
    bench.py ramp RUN       adaptive worker count under a ramp of client concurrency

Both use the client's `load` mode (no trigger: a schedule of SECONDS:CONNECTIONS steps)
and the same app ([app.py](app.py)) as the reload table. Recycling: each worker is
replaced after MAX_REQUESTS requests (steward: the worker asks with X_STEWARD_RECYCLE=
through serve.py; gunicorn and uWSGI: their own --max-requests), or once its RSS passes
RSS_MB while the app keeps LEAK_KB per request, or once it has lived LIFETIME_S
(gunicorn has neither). A recycle is counted twice: new pids
that answered the client, and the system's own log lines; a row where either is zero
fails the run, so a table never shows a recycling that did not happen. Ramp: the number
of worker processes (children of the master) is sampled every 100 ms from /proc.
"""

import json
import os
import re
import signal
import subprocess
import threading
import time

import bench

HERE = bench.HERE
WORKERS = bench.WORKERS
SECONDS = int(os.environ.get("RECYCLE_SECONDS", "20"))
MAX_REQUESTS = int(os.environ.get("MAX_REQUESTS", "200"))
LEAK_KB = int(os.environ.get("LEAK_KB", "128"))
RSS_MB = int(os.environ.get("RSS_MB", "64"))
LIFETIME_S = int(os.environ.get("LIFETIME_S", "4"))
RAMP = os.environ.get("RAMP", "5:1,20:8,20:1")
RAMP_MAX = 8
GUNICORN = os.path.join(bench.VENV, "bin", "gunicorn")


def uwsgi(port, processes=WORKERS):
    return ["uwsgi", "--plugin", "python3", "--master", "--processes", str(processes),
            "--http-socket", f"127.0.0.1:{port}", "--pythonpath", HERE,
            "--module", "app:application", "--need-app", "--disable-logging",
            "--die-on-term"]


def steward(port, workers=WORKERS):
    return [bench.STEWARD, "--listen", f"127.0.0.1:{port}", "--workers", str(workers),
            "--ready", "notify"]


def serve():
    return ["--", bench.PYTHON, os.path.join(HERE, "serve.py"), "app:application"]


def recycle_systems(port):
    """(name, command, extra environment, log pattern of one recycle)."""
    n = str(MAX_REQUESTS)
    gunicorn = [GUNICORN, "-w", str(WORKERS), "-b", f"127.0.0.1:{port}", "--chdir", HERE]
    leak = {"LEAK_KB": str(LEAK_KB)}
    # uWSGI recycles no worker younger than min-worker-lifetime (60 s by default): 0
    # lets it recycle as often as the others.
    young = ["--min-worker-lifetime", "0"]
    return [
        (f"steward, worker asks after {n} requests", steward(port) + serve(),
         {"MAX_REQUESTS": n}, r"event=\"worker-recycled\""),
        (f"gunicorn --max-requests {n}", gunicorn + ["--max-requests", n, "app:application"],
         {}, r"Autorestarting worker after current request"),
        (f"gunicorn --preload --max-requests {n}",
         gunicorn + ["--preload", "--max-requests", n, "app:application"],
         {}, r"Autorestarting worker after current request"),
        # gunicorn's answer to workers that all reach N together: each its own N.
        (f"gunicorn --max-requests {n} --max-requests-jitter {MAX_REQUESTS // 4}",
         gunicorn + ["--max-requests", n, "--max-requests-jitter", str(MAX_REQUESTS // 4),
                     "app:application"],
         {}, r"Autorestarting worker after current request"),
        (f"uWSGI --max-requests {n}", uwsgi(port) + ["--max-requests", n] + young, {},
         r"The work of process \d+ is done"),
        (f"steward --max-worker-lifetime {LIFETIME_S}s", steward(port)
         + ["--max-worker-lifetime", f"{LIFETIME_S}s"] + serve(), {},
         r"event=\"worker-recycled\""),
        (f"uWSGI --max-worker-lifetime {LIFETIME_S}",
         uwsgi(port) + ["--max-worker-lifetime", str(LIFETIME_S)] + young, {},
         r"lifetime reached"),
        (f"steward --reload-on-rss {RSS_MB} (leak {LEAK_KB} KB/request)",
         steward(port) + ["--reload-on-rss", str(RSS_MB)] + serve(), leak,
         r"event=\"worker-recycled\""),
        (f"uWSGI --reload-on-rss {RSS_MB} (leak {LEAK_KB} KB/request)",
         uwsgi(port) + ["--reload-on-rss", str(RSS_MB)] + young, leak,
         r"The work of process \d+ is done"),
    ]


def ramp_systems(port):
    """(name, command): the same ramp against an adaptive and a fixed worker count."""
    cheaper = ["--cheaper", "1", "--cheaper-step", "2", "--cheaper-overload", "1s",
               "--cheaper-idle", "2s"]
    # uWSGI's backlog algorithm: every second, more than cheaper-overload connections
    # queued start cheaper-step more, fewer retire one (no idle period of its own).
    backlog = ["--cheaper", "1", "--cheaper-algo", "backlog", "--cheaper-step", "2",
               "--cheaper-overload", "1"]
    return [
        ("steward --cheaper 1 --workers 8", steward(port, RAMP_MAX) + cheaper + serve()),
        # uWSGI's backlog algorithm retires a worker at any 1-s check with nothing queued.
        ("steward, the same with --cheaper-idle 1s",
         steward(port, RAMP_MAX) + cheaper[:-1] + ["1s"] + serve()),
        ("uWSGI --cheaper 1 --processes 8 (backlog)", uwsgi(port, RAMP_MAX) + backlog),
        # Its new workers import the app after the fork, as steward's (exec'd) ones do:
        # the same algorithm without the head start of a preloaded app.
        ("uWSGI --lazy-apps, the same", uwsgi(port, RAMP_MAX) + backlog + ["--lazy-apps"]),
        ("steward --workers 8 (fixed)", steward(port, RAMP_MAX) + serve()),
    ]


class Served:
    """A system started in a session of its own, stopped (and its group killed) at exit."""

    def __init__(self, command, env, log_path):
        self.log_path = log_path
        self.log = open(log_path, "w")
        env = dict(os.environ, BOOT_MS=str(bench.BOOT_MS), REQ_MS=str(bench.REQ_MS), **env)
        self.master = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT,
                                       env=env, cwd=HERE, start_new_session=True)

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.master.send_signal(signal.SIGINT)
        try:
            self.master.wait(30)
        except subprocess.TimeoutExpired:
            self.master.kill()
            self.master.wait()
        try:
            os.killpg(self.master.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.log.close()

    def log_count(self, pattern):
        with open(self.log_path, errors="replace") as f:
            return len(re.findall(pattern, f.read()))


def ready(port):
    """The first answer, then time for every worker to import the app (BOOT_MS)."""
    bench.wait_http(port)
    time.sleep(bench.BOOT_MS / 1000 + 1.0)


def load(port, schedule):
    client = subprocess.run([bench.CLIENT, f"127.0.0.1:{port}", "load", schedule],
                            capture_output=True, text=True, check=True)
    return json.loads(client.stdout)


def bench_recycle(run):
    results = []
    port = bench.free_port()
    only = os.environ.get("BENCH_ONLY")
    for name, command, env, pattern in recycle_systems(port):
        if only and only not in name:
            continue
        log_path = os.path.join(bench.OUT, f"recycle-{run}-{len(results)}.log")
        load_before = bench.loadavg()
        with Served(command, env, log_path) as served:
            ready(port)
            result = load(port, f"{SECONDS}:{bench.CONNECTIONS}")
            time.sleep(0.5)  # the last recycle's log line
            logged = served.log_count(pattern)
        result.update(system=name, recycles_pids=result["distinct_pids"] - WORKERS,
                      recycles_logged=logged, loadavg_before=load_before,
                      loadavg_after=bench.loadavg())
        a = result["all"]
        print(f"{name}: {a['requests']} requests, {a['requests'] - a['ok']} failed, "
              f"{result['recycles_pids']} new pids, {logged} logged recycles, worst gap "
              f"{result['worst_gap_ms']} ms, p99 {a['latency']['p99_ms']} ms", flush=True)
        results.append(result)
        if result["recycles_pids"] <= 0 or logged <= 0:
            raise SystemExit(f"{name}: no recycle happened (see {log_path})")
    bench.write(f"recycle-{run}.json", dict(
        bench.facts(), seconds=SECONDS, max_requests=MAX_REQUESTS, leak_kb=LEAK_KB,
        rss_mb=RSS_MB, lifetime_s=LIFETIME_S, results=results))


def workers_of(pid):
    """Live children of `pid` (zombies not yet reaped are not counted)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = f.read().split()
    except OSError:
        return 0
    alive = 0
    for child in children:
        try:
            with open(f"/proc/{child}/stat") as f:
                alive += f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            pass
    return alive


class Sampler(threading.Thread):
    """The master's worker count every 100 ms: (seconds since start, count)."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.samples, self.done = pid, [], threading.Event()
        self.origin = time.monotonic()

    def run(self):
        while not self.done.is_set():
            self.samples.append((time.monotonic() - self.origin, workers_of(self.pid)))
            self.done.wait(0.1)


def ramp_summary(samples, steps):
    """Peak, worker-seconds (the samples integrated) and the mean count per step."""
    worker_seconds = sum((b[0] - a[0]) * a[1] for a, b in zip(samples, samples[1:]))
    per_step = []
    for step in steps:
        start, end = step["from_s"], step["from_s"] + step["seconds"]
        counts = [c for t, c in samples if start <= t < end]
        per_step.append(sum(counts) / len(counts) if counts else None)
    return dict(peak_workers=max(c for _, c in samples), worker_seconds=worker_seconds,
                mean_workers_per_step=per_step)


def bench_ramp(run):
    results = []
    port = bench.free_port()
    only = os.environ.get("BENCH_ONLY")
    for name, command in ramp_systems(port):
        if only and only not in name:
            continue
        log_path = os.path.join(bench.OUT, f"ramp-{run}-{len(results)}.log")
        load_before = bench.loadavg()
        with Served(command, {}, log_path) as served:
            ready(port)
            sampler = Sampler(served.master.pid)
            sampler.start()
            result = load(port, RAMP)
            sampler.done.set()
            sampler.join()
        result.update(ramp_summary(sampler.samples, result["steps"]), system=name,
                      samples=sampler.samples, loadavg_before=load_before,
                      loadavg_after=bench.loadavg())
        a = result["all"]
        print(f"{name}: {a['requests']} requests, {a['requests'] - a['ok']} failed, "
              f"p99 {a['latency']['p99_ms']} ms, peak {result['peak_workers']} workers, "
              f"{result['worker_seconds']:.1f} worker-s, per step "
              f"{result['mean_workers_per_step']}", flush=True)
        results.append(result)
    bench.write(f"ramp-{run}.json", dict(bench.facts(), ramp=RAMP, results=results))
