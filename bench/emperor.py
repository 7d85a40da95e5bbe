"""Emperor latency isolation: does reloading one vassal over and over slow another one down?

    bench.py emperor RUN

One `steward emperor DIR` with VASSALS vassal files: vassal "loaded" serves the
benchmark app ([app.py](app.py) through [serve.py](serve.py), 2 workers) under
closed-loop load; vassal "touched" serves the same app (2 workers, 500 ms import);
the rest run one idle `steward-demo` worker each. The client runs two steps of the same
load (`load SECONDS:4,SECONDS:4`); during the second the driver touches the touched
vassal's file every TOUCH_MS, and the emperor reloads it each time (steward check,
then SIGHUP: a new generation of its Python workers starts beside the old). The loaded
vassal's latency in the quiet step against the touching step is the isolation; the
emperor's log counts the reloads that completed (`vassal-ready` of the touched vassal).
"""

import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time

import bench
import lifecycle

VASSALS = int(os.environ.get("EMPEROR_VASSALS", "100"))
SECONDS = int(os.environ.get("EMPEROR_SECONDS", "20"))
TOUCH_MS = int(os.environ.get("EMPEROR_TOUCH_MS", "1000"))
CONNECTIONS = 4
DEMO = os.path.join(bench.ROOT, "target", "release", "steward-demo")


def vassal(path, port, command, workers):
    words = ", ".join(json.dumps(w) for w in command)
    with open(path, "w") as f:
        f.write(f'listen = "127.0.0.1:{port}"\nworkers = {workers}\nready = "notify"\n'
                f"command = [{words}]\n")


def write_vassals(directory):
    """The vassal files; the loaded and touched vassals' ports."""
    app = [bench.PYTHON, os.path.join(bench.HERE, "serve.py"), "app:application"]
    ports = {"loaded": bench.free_port(), "touched": bench.free_port()}
    vassal(os.path.join(directory, "loaded.toml"), ports["loaded"], app, 2)
    vassal(os.path.join(directory, "touched.toml"), ports["touched"], app, 2)
    for i in range(VASSALS - 2):
        vassal(os.path.join(directory, f"idle{i:03}.toml"), bench.free_port(), [DEMO], 1)
    return ports


def touch_every(path, start_s, stop):
    """From `start_s` on, rewrite `path` (same content, new mtime) every TOUCH_MS."""
    if stop.wait(start_s):
        return
    while not stop.wait(TOUCH_MS / 1000):
        os.utime(path)


def wait_log(log_path, pattern, deadline_s=120):
    deadline = time.time() + deadline_s
    while time.time() < deadline:
        with open(log_path, errors="replace") as f:
            if re.search(pattern, f.read()):
                return
        time.sleep(0.1)
    raise RuntimeError(f"no {pattern!r} in {log_path}")


def bench_emperor(run):
    log_path = os.path.join(bench.OUT, f"emperor-{run}.log")
    with tempfile.TemporaryDirectory(prefix="steward-emperor-") as directory:
        ports = write_vassals(directory)
        load_before = bench.loadavg()
        started = time.monotonic()
        with lifecycle.Served([bench.STEWARD, "emperor", directory], {}, log_path) as served:
            wait_log(log_path, r"emperor-ready")
            ready_s = time.monotonic() - started
            rss_ready_kb = bench.rss_kb(served.master.pid)
            lifecycle.ready(ports["loaded"])
            stop = threading.Event()
            toucher = threading.Thread(target=touch_every, args=(
                os.path.join(directory, "touched.toml"), SECONDS, stop))
            toucher.start()
            result = lifecycle.load(ports["loaded"], f"{SECONDS}:{CONNECTIONS},{SECONDS}:{CONNECTIONS}")
            stop.set()
            toucher.join()
            time.sleep(1)
            rss_after_kb = bench.rss_kb(served.master.pid)
        with open(log_path, errors="replace") as f:
            text = f.read()
    touched = lambda event: len(re.findall(rf'event="?{event}"?[^\n]*touched\.toml', text))
    result.update(vassals=VASSALS, touch_ms=TOUCH_MS, emperor_ready_s=ready_s,
                  emperor_rss_kb=rss_ready_kb, emperor_rss_after_kb=rss_after_kb,
                  reloads_asked=touched("vassal-reloading"), ready_events=touched("vassal-ready"),
                  loadavg_before=load_before, loadavg_after=bench.loadavg())
    quiet, touching = (s["result"] for s in result["steps"])
    print(f"emperor, {VASSALS} vassals: quiet p50/p99/max {quiet['latency']}, touching "
          f"{touching['latency']}, {result['reloads_asked']} reloads asked, "
          f"{result['ready_events']} vassal-ready of the touched one", flush=True)
    if result["reloads_asked"] <= 0:
        raise SystemExit(f"no reload of the touched vassal (see {log_path})")
    bench.write(f"emperor-{run}.json", dict(bench.facts(), **result))
