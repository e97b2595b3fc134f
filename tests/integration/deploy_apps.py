"""The apps tests/integration/test_deploy.py serves, one per framework.

Each answers ``GET /`` with "<loop> <pid>" (the module of the running
loop's class, so a test can tell treadle's from asyncio's, and the process
that served it), and ``GET /slow`` the same after half a second, creating
the file named by $TREADLE_DEPLOY_MARK first, so that a test knows when a
request is in flight without guessing.
"""

from __future__ import annotations

import asyncio
import os
import sys


def _answer() -> bytes:
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    return f"{loop} {os.getpid()}\n".encode()


async def _slow() -> None:
    mark = os.environ.get("TREADLE_DEPLOY_MARK")
    if mark:
        with open(f"{mark}.{os.getpid()}", "w"):
            pass
    await asyncio.sleep(0.5)


async def asgi_app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/slow":
        await _slow()
    body = _answer()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def aiohttp_app(argv=None):
    """An aiohttp Application (also the ``python -m aiohttp.web`` entry)."""
    from aiohttp import web

    async def handle(request):
        if request.path == "/slow":
            await _slow()
        return web.Response(body=_answer())

    app = web.Application()
    app.router.add_get("/", handle)
    app.router.add_get("/slow", handle)
    return app


if __name__ == "__main__":
    # python -m tests.integration.deploy_apps PORT asyncio|treadle|uvloop:
    # aiohttp's web.run_app on that loop, with reuse_port (several may
    # serve the port; the README's requests/s were measured this way).
    from aiohttp import web
    port, loop_name = int(sys.argv[1]), sys.argv[2]
    loop = None
    if loop_name == "treadle":
        import treadle
        loop = treadle.new_event_loop()
    elif loop_name == "uvloop":
        import uvloop
        loop = uvloop.new_event_loop()
    web.run_app(aiohttp_app(), host="127.0.0.1", port=port, loop=loop,
                reuse_port=True, print=None, access_log=None)
