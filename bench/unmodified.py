"""The "unmodified servers" table: real servers that never send READY=1 (tests/servers/:
Python's http.server, Node's http, uvicorn --fd 3, Go's net/http on net.FileListener,
gunicorn reading LISTEN_FDS), each with an app that takes BOOT_MS to start, under
steward's DEFAULT readiness mode (gunicorn: `ready = listening`, see the README), through
RELOADS reloads under closed-loop load.

Per server: failed requests, the longest time with no answer at all (max gap), reload
completion (trigger to the first answer of the new generation after the last of the
old), and the server's own start-up measured alone (spawned on a socket at fd 3, to its
first answer): completion minus start-up is what steward adds."""

import os
import socket
import statistics
import subprocess
import time

import bench

ROOT = bench.ROOT
SERVERS = os.path.join(ROOT, "tests", "servers")
TEST_VENV = os.environ.get("READINESS_TEST_VENV", "/var/cache/steward-test-venv")
BOOT_MS = int(os.environ.get("UNMODIFIED_BOOT_MS", "2000"))
PERIOD_MS = BOOT_MS + 1500


def go_server():
    binary = os.path.join(bench.OUT, "go_http")
    subprocess.run(["go", "build", "-o", binary, os.path.join(SERVERS, "go_http", "main.go")],
                   check=True, env=dict(os.environ, GOFLAGS="-buildvcs=false"))
    return binary


def servers():
    """(name, command, steward's extra args)."""
    uvicorn = os.path.join(TEST_VENV, "bin", "uvicorn")
    gunicorn = os.path.join(TEST_VENV, "bin", "gunicorn")
    return [
        ("python http.server", [bench.PYTHON, os.path.join(SERVERS, "python_http.py")], []),
        ("node http", ["node", os.path.join(SERVERS, "node_http.js")], []),
        ("uvicorn --fd 3", [uvicorn, "--fd", "3", "--app-dir", SERVERS, "--no-access-log",
                            "uvicorn_app:app"], []),
        ("go net/http", [go_server()], []),
        ("gunicorn --preload (LISTEN_FDS)", [gunicorn, "--workers", "1", "--preload",
                                             "--chdir", SERVERS, "wsgi_app:app"], []),
    ]


def own_start_up_ms(command, samples=3):
    """The server alone: spawned with a listening socket at fd 3 (LISTEN_FDS=1), the
    time to its first answer; the median of `samples`."""
    times = []
    for _ in range(samples):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        port = listener.getsockname()[1]
        fd = listener.fileno()

        env = dict(os.environ, BOOT_MS=str(BOOT_MS), LISTEN_FDS="1", LISTEN_FDNAMES="listen0")
        # LISTEN_PID is the server's own pid, known only in the child: sh sets it and
        # execs the server in its place (gunicorn checks it).
        wrapped = ["/bin/sh", "-c", 'LISTEN_PID=$$ exec "$@"', "sh", *command]
        started = time.monotonic()
        server = subprocess.Popen(wrapped, preexec_fn=lambda: os.dup2(fd, 3), pass_fds=(fd,),
                                  env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        listener.close()
        try:
            bench.wait_http(port)
            times.append((time.monotonic() - started) * 1000)
        finally:
            server.kill()
            server.wait()
    return statistics.median(times)


def ready_after_ms(log_path):
    """Per reload, from steward's log: reload-started to generation-ready (the new
    generation seen ready by the default mode; the old one is asked to stop then)."""
    def at(line):
        stamp = line.split()[0].rstrip("Z")
        hms = stamp.split("T")[1]
        h, m, sec = hms.split(":")
        return (int(h) * 3600 + int(m) * 60 + float(sec)) * 1000
    started, spans = None, []
    with open(log_path) as f:
        for line in f:
            if 'event="reload-started"' in line:
                started = at(line)
            elif 'event="generation-ready"' in line and started is not None:
                spans.append(at(line) - started)
                started = None
    spans.sort()
    if not spans:
        return None
    return dict(p50=round(spans[(len(spans) - 1) // 2], 1), max=round(spans[-1], 1))


def bench_unmodified(run):
    rows = []
    for name, command, args in servers():
        own = own_start_up_ms(command)
        port = bench.free_port()
        steward = [bench.STEWARD, "--listen", f"127.0.0.1:{port}", "--workers",
                   str(bench.WORKERS), *args, "--", *command]
        log_path = os.path.join(bench.OUT, f"unmodified-{run}-{len(rows)}.log")
        result = bench.run_reload(name, steward, lambda pid: f"signal:HUP:{pid}", PERIOD_MS,
                                  log_path, boot_ms=BOOT_MS)
        result.update(own_start_up_ms=round(own, 1), ready=" ".join(args) or "auto (default)",
                      ready_after_ms=ready_after_ms(log_path))
        rows.append(result)
    rows.append(bench_peer(run))
    bench.write(f"unmodified-{run}.json", dict(bench.facts(), boot_ms=BOOT_MS, results=rows))


def bench_peer(run):
    """uvicorn under another supervisor, for whose fault its failures are: gunicorn with
    uvicorn's own worker class (UvicornWorker), reloaded with SIGHUP, as most uvicorn
    deployments with a master run it."""
    gunicorn = os.path.join(TEST_VENV, "bin", "gunicorn")
    port = bench.free_port()
    command = [gunicorn, "--workers", str(bench.WORKERS), "--worker-class",
               "uvicorn.workers.UvicornWorker", "--chdir", SERVERS, "--bind",
               f"127.0.0.1:{port}", "uvicorn_app:app"]
    log_path = os.path.join(bench.OUT, f"unmodified-peer-{run}.log")
    result = bench.run_reload("uvicorn under gunicorn (UvicornWorker), HUP", command,
                              lambda pid: f"signal:HUP:{pid}", PERIOD_MS, log_path,
                              boot_ms=BOOT_MS)
    result.update(own_start_up_ms=float("nan"), ready="gunicorn's own")
    return result
