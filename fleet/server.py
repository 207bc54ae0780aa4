"""Serving the API: uvicorn processes (cores + 1 in production), each on its own ``SO_REUSEPORT``
socket."""

from __future__ import annotations

import gc
import multiprocessing as mp
import socket

import uvicorn
from fastapi import FastAPI

#: Allocations between young collections (CPython's default is 700). A request allocates a
#: few thousand objects; at 700 a young collection runs several times inside every
#: request and promotes its live objects, whose later full collections are the pauses.
GC_YOUNG_THRESHOLD = 20_000


def served_app() -> FastAPI:
    """The application as a server process runs it: :func:`fleet.app.create_app`, then the
    garbage collector set for serving.

    Once the app is built (every module imported, every route and schema compiled) its
    objects live as long as the process, yet every full collection walked all of them
    again: ~280,000 objects, 40–470 ms with the GIL held, the whole p99 of
    ``gongche bench api`` (measured with ``gc.callbacks``). ``gc.freeze()`` moves them out
    of the collector's sight (they are still freed by reference counting), so a full
    collection walks only what requests left behind; a larger young threshold makes
    collections rarer and promotes fewer objects of requests still in flight. Only here:
    tests build many apps in one process and must keep their garbage collectable.
    """
    from fleet.app import create_app
    from fleet.heap import freeze_startup_heap

    app = create_app()
    freeze_startup_heap()
    _, g1, g2 = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, g1, g2)
    return app


def uvicorn_config(log_level: str = "warning", access_log: bool = False,
                   host: str = "127.0.0.1", port: int = 8000) -> uvicorn.Config:
    """The uvicorn settings every server process uses.

    httptools and uvloop (``uvicorn[standard]``) named rather than left to "auto", so a
    missing one fails loudly instead of silently serving on the pure-Python fallbacks; no
    ``Server`` header. No ``limit_concurrency``: uvicorn counts idle keep-alive connections
    against it too; the app caps the requests in progress itself (fleet.app._InFlightCap).
    """
    return uvicorn.Config("fleet.server:served_app", factory=True, log_level=log_level,
                          access_log=access_log, backlog=2048, http="httptools",
                          loop="uvloop", server_header=False, host=host, port=port)


def reuseport_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def serve_worker(host: str, port: int, log_level: str = "warning",
                 access_log: bool = False) -> None:
    """One uvicorn process on its own ``SO_REUSEPORT`` socket on ``host:port``.

    Rather than ``uvicorn --workers N``: there all workers share one listening socket, and
    the first to wake accepts a whole burst of connections (asyncio accepts up to the
    backlog per wake-up), so under ``gongche bench api`` the load's keep-alive connections
    ended up 72/28 on two workers and one worker was the bottleneck. With a socket each,
    the kernel spreads connections over the workers by hash, as ``gunicorn --reuse-port``
    or a balancer in front of several processes would.
    """
    sock = reuseport_socket(host, port)
    uvicorn.Server(uvicorn_config(log_level, access_log)).run(sockets=[sock])


def serve(host: str, port: int, workers: int, log_level: str = "info") -> None:
    """One process on ``host:port``, or ``workers`` processes of :func:`serve_worker`
    (spawned: nothing shared by fork); SIGTERM or SIGINT stops them all."""
    import signal

    if workers <= 1:
        uvicorn.Server(uvicorn_config(log_level, True, host, port)).run()
        return
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=serve_worker, args=(host, port, log_level, False))
             for _ in range(workers)]

    def stop(*_: object) -> None:
        for p in procs:
            if p.pid is not None and p.is_alive():
                p.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for p in procs:
        p.start()
    for p in procs:
        p.join()
