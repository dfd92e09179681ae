"""`vxn restart`: stop each container (SIGTERM, SIGKILL after -t seconds), then start it."""

from __future__ import annotations

from vxn.cli.commands.stop import stopping

restart = stopping("restart", "Restart one or more containers.")
