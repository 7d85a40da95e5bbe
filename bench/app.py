"""The benchmark's WSGI app, the same under every server.

Importing it takes BOOT_MS milliseconds (a sleep standing in for loading code and
data); each request takes REQ_MS. Every response names the process that answered and
when that process imported the app (X-Boot, ns since the epoch), so the client can tell
an old generation's answer from a new one's under any server, with no help from it.

With LEAK_KB=K each request keeps K KB more (written, so resident): a leaking app, for
the servers' reload-on-rss.
"""

import os
import time

BOOT_NS = time.time_ns()
BOOT_MS = int(os.environ.get("BOOT_MS", "500"))
REQ_MS = int(os.environ.get("REQ_MS", "10"))
LEAK_KB = int(os.environ.get("LEAK_KB", "0"))
LEAKED = []

time.sleep(BOOT_MS / 1000)


def application(environ, start_response):
    time.sleep(REQ_MS / 1000)
    if LEAK_KB:
        # Non-zero bytes: a zero-filled buffer may be mapped lazily and never counted.
        LEAKED.append(b"\x01" * (LEAK_KB * 1024))
    body = b"ok\n"
    start_response(
        "200 OK",
        [
            ("Content-Type", "text/plain"),
            ("Content-Length", str(len(body))),
            ("X-Boot", str(BOOT_NS)),
            ("X-Pid", str(os.getpid())),
        ],
    )
    return [body]
