"""A single-process HTTP/1.0 server for one WSGI app, run as a steward worker.

It serves on the socket inherited as fd 3 (LISTEN_FDS), says READY=1 on NOTIFY_SOCKET
once the app is imported, and drains on SIGTERM: it stops accepting, finishes the
request in hand and exits. Connections still queued stay in the shared listening socket
for the other workers. One request at a time, one connection per request: what a
gunicorn sync worker or a uWSGI process without threads does.

With MAX_REQUESTS=N in the environment it asks steward for its own replacement after N
requests (X_STEWARD_RECYCLE=, the worker contract; what `steward-demo --max-requests`
does) and serves on until it is stopped: gunicorn's and uWSGI's `max-requests`, where
the worker exits by itself instead.

    serve.py MODULE:CALLABLE
"""

import importlib
import os
import select
import signal
import socket
import sys

SD_LISTEN_FDS_START = 3


def notify(state):
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(state.encode(), path)


def read_request(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    request_line, *header_lines = head.split("\r\n")
    method, target, protocol = request_line.split(" ", 2)
    path, _, query = target.partition("?")
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_PROTOCOL": protocol,
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "0",
        "SCRIPT_NAME": "",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": None,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for line in header_lines:
        name, _, value = line.partition(":")
        environ["HTTP_" + name.strip().upper().replace("-", "_")] = value.strip()
    return environ


def handle(app, conn):
    environ = read_request(conn)
    if environ is None:
        return
    status_headers = []

    def start_response(status, headers, exc_info=None):
        status_headers[:] = [status, headers]

    body = b"".join(app(environ, start_response))
    status, headers = status_headers
    head = "HTTP/1.0 %s\r\n" % status
    head += "".join("%s: %s\r\n" % h for h in headers)
    head += "Connection: close\r\n\r\n"
    conn.sendall(head.encode("latin-1") + body)


def main():
    if os.environ.get("LISTEN_PID") != str(os.getpid()) or int(
        os.environ.get("LISTEN_FDS", "0")
    ) < 1:
        sys.exit("serve.py: no socket inherited (LISTEN_FDS/LISTEN_PID)")
    listener = socket.socket(fileno=SD_LISTEN_FDS_START)
    listener.setblocking(False)

    # A signal wakes the select below through this pipe, so a SIGTERM that arrives while
    # a request is handled lets it finish, and one that arrives while idle ends the loop.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))

    max_requests = int(os.environ.get("MAX_REQUESTS", "0"))
    served = 0
    module, _, name = sys.argv[1].partition(":")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    app = getattr(importlib.import_module(module), name or "application")
    notify("READY=1")

    while not stopping:
        readable, _, _ = select.select([listener, wake_r], [], [])
        if stopping:
            break
        if listener not in readable:
            continue
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            continue  # another worker took it
        conn.setblocking(True)
        with conn:
            try:
                handle(app, conn)
            except OSError:
                pass
        served += 1
        if served == max_requests:
            notify("X_STEWARD_RECYCLE=after %d requests" % served)
    notify("STOPPING=1")


if __name__ == "__main__":
    main()
