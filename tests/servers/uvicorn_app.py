"""An ASGI app for steward's tests, served by an unmodified uvicorn (`uvicorn --fd 3
uvicorn_app:app`): its import takes BOOT_MS (default 2000), and it never sends READY=1."""
import os
import time

time.sleep(int(os.environ.get("BOOT_MS", "2000")) / 1000)  # the slow import

generation = os.environ.get("STEWARD_GENERATION", "?")
BOOT_NS = time.time_ns()  # X-Boot: tells bench/'s client which process answered


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = f"hello from uvicorn generation {generation} pid {os.getpid()}\n".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"),
                            (b"x-boot", str(BOOT_NS).encode())]})
    await send({"type": "http.response.body", "body": body})
