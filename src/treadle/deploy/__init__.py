"""Running servers on treadle: glue for the process managers that pick the
event loop themselves (see the README's "Deploying").

Owns: nothing the runtime uses.  Each submodule imports the server it
adapts, and only when it is imported itself: ``import treadle`` never
imports a server, and a server that is not installed costs nothing until
its adapter is named (``gunicorn -k treadle.deploy.gunicorn.UvicornWorker``).
Never: imported by the runtime (``treadle._*``).
"""
