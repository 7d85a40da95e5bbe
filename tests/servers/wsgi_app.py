"""A WSGI app for steward's gunicorn test: its import takes BOOT_MS (default 2000), as a
real app's does. gunicorn (without --preload) imports it in its own worker, after fork,
and reads the sockets steward hands over from LISTEN_FDS."""
import os
import time

time.sleep(int(os.environ.get("BOOT_MS", "2000")) / 1000)  # the slow import

generation = os.environ.get("STEWARD_GENERATION", "?")
BOOT_NS = time.time_ns()  # X-Boot: tells bench/'s client which process answered


def app(environ, start_response):
    body = f"hello from gunicorn generation {generation} pid {os.getpid()}\n".encode()
    start_response(
        "200 OK",
        [
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
            ("X-Boot", str(BOOT_NS)),
        ],
    )
    return [body]
