"""The benchmark's WSGI app, the same under every server.

Importing it takes BOOT_MS milliseconds (a sleep standing in for loading code and
data); each request takes REQ_MS. Every response names the process that answered and
when that process imported the app (X-Boot, ns since the epoch), so the client can tell
an old generation's answer from a new one's under any server, with no help from it.
"""

import os
import time

BOOT_NS = time.time_ns()
BOOT_MS = int(os.environ.get("BOOT_MS", "500"))
REQ_MS = int(os.environ.get("REQ_MS", "10"))

time.sleep(BOOT_MS / 1000)


def application(environ, start_response):
    time.sleep(REQ_MS / 1000)
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
