"""vxnd, the vxn daemon (console script `vxnd`): parse flags, set up logging, serve.

Exit codes: 0 after SIGTERM/SIGINT, 1 when it cannot start (another vxnd holds the
run dir, bad config), 2 for bad flags.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

from vxn import __version__, args
from vxn.adapters.statedir import StateDir
from vxn.config import Settings, load_settings
from vxn.core.platform import Platform
from vxn.daemon import logs, server
from vxn.daemon.api import Context, ImageAPI
from vxn.errors import Unavailable, VxnError

log = logging.getLogger("vxnd")


@args.command("vxnd", version=f"vxnd version {__version__}")
@args.option("--state-dir", type=args.Path(), help="Default /var/lib/vxn.")
@args.option("--run-dir", type=args.Path(), help="Default /run/vxn.")
@args.option("--log-file", type=args.Path(), help="Log here, not to stderr.")
@args.option("--debug", is_flag=True, help="Log debug messages.")
def cli(
    _: None, *, state_dir: Path | None, run_dir: Path | None, log_file: Path | None, debug: bool
) -> None:
    """Serve the vxn API on <run dir>/vxn.sock."""
    if log_file is not None:
        log_file.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    logs.setup(debug=debug, log_file=log_file)
    settings = load_settings(state_dir=state_dir, run_dir=run_dir)
    platform = (
        Platform.parse(settings.platform)
        if settings.platform
        else Platform.for_machine(os.uname().machine)
    )
    images = _image_service(settings, platform)
    containers = _container_service(settings, images)
    ctx = Context(settings=settings, images=images, platform=platform, containers=containers)
    asyncio.run(server.run(ctx))


def _container_service(settings: Settings, images: ImageAPI) -> object:
    from vxn.adapters.statedir import RunDir
    from vxn.daemon.api import detect_backends
    from vxn.engine.containers import ContainerService

    if os.environ.get("VXN_TESTING_FAKE_BACKEND") == "1":  # bench/daemon.py: no QEMU
        from vxn.testing.fake_backend import fake_containers

        return fake_containers(settings, images)
    state, run = StateDir(settings.state_dir), RunDir(settings.run_dir)
    return ContainerService(settings, state, run, images, xen=detect_backends()["xen"])


def _image_service(settings: Settings, platform: Platform) -> ImageAPI:
    from vxn.engine.images import ImageService
    from vxn.engine.pull import PullConfig

    state = StateDir(settings.state_dir)
    try:
        state.ensure()
    except OSError as e:
        raise Unavailable(
            f"state dir {state.root}: cannot create it ({e.strerror}); "
            "fix VXN_STATE_DIR or --state-dir"
        ) from None
    pull = PullConfig(settings=settings.pull, registries=settings.registries)
    return ImageService(state, platform, pull=pull)


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(None, sys.argv[1:] if argv is None else argv)
    except args.UsageError as e:
        sys.stderr.write(e.show())
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(1)
    except VxnError as e:
        _fatal(str(e))
    except Exception as e:
        log.exception("vxnd: crashed")
        _fatal(f"crashed: {type(e).__name__}: {e}")
    sys.exit(0)


def _fatal(message: str) -> None:
    # Logged for the log file (an auto-started vxnd's stderr is /dev/null), printed
    # only when logging has not been set up, to keep one line on a terminal.
    if logging.getLogger().handlers:
        log.error("%s", message)
    else:
        print(f"vxnd: {message}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
    main()
