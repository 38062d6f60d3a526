"""The ``sendq`` command: one module per command group, each a thin caller.

enqueue.py       sendq enqueue
messages.py      sendq messages show|stats
breakers.py      sendq carriers|providers status|pause|resume|history
limits.py        sendq limits status
serving.py       sendq worker|webhooks|simulator|demo
redis_server.py  sendq redis url|stop
common.py        consoles, --json, errors and exit codes, the composition root
"""

from __future__ import annotations

from worker.cli.app import app, main

__all__ = ["app", "main"]
