"""An unmodified-style Python server for steward's tests: Python's http.server on the
socket systemd-style socket activation hands over (fd 3), after an import that takes
BOOT_MS (default 2000). It never sends READY=1. On SIGTERM it stops accepting, finishes
what is in flight and exits, as a well-behaved server does."""
import os
import signal
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

time.sleep(int(os.environ.get("BOOT_MS", "2000")) / 1000)  # the slow import

generation = os.environ.get("STEWARD_GENERATION", "?")
BOOT_NS = time.time_ns()  # X-Boot: tells bench/'s client which process answered


class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"hello from python generation {generation} pid {os.getpid()}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.send_header("X-Boot", str(BOOT_NS))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Hello, bind_and_activate=False)
server.socket = socket.socket(fileno=3)
server.daemon_threads = False
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
server.serve_forever()
server.server_close()
