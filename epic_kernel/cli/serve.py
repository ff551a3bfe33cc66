"""`epic serve`: an OpenAI-compatible HTTP server on the shared batcher."""

from __future__ import annotations

import argparse
import contextlib

from .output import INSTALL_LOCAL, err
from .run import check_backend

__all__ = ["cmd_serve"]


def cmd_serve(args: argparse.Namespace) -> int:
    if not check_backend("epic serve", args.backend):
        return 2
    try:
        from ..llm.server import serve
    except ImportError as e:
        err(f"epic serve needs the server extras ({e.name or e}): pip install 'epic-kernel[serve]'")
        return 1
    from ..errors import ModelNotAvailable
    from ..llm.registry import resolve_backend

    try:
        backend = resolve_backend(args.backend, {"model": args.model})
    except (ModelNotAvailable, ImportError, OSError) as e:
        err(f"epic serve: cannot load the model: {e}\n  install the local model stack with:\n    {INSTALL_LOCAL}"
             "\n  or serve the simulated model: epic serve --backend sim")
        return 1
    except (ValueError, TypeError) as e:
        err(f"epic serve: {e}")
        return 2
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.api_key:
        err(f"warning: serving on {args.host} without --api-key: anyone who can reach this port can use the model")
    names = args.served_model_name or [args.model or backend.default_model or backend.name]
    err(f"epic serve: {backend.describe()} as model {names[0]!r} on http://{args.host}:{args.port}/v1 "
         f"(OpenAI-compatible; Ctrl-C stops)")
    try:
        serve(backend, host=args.host, port=args.port, api_key=args.api_key, model_name=names[0],
              log_level=args.log_level, aliases=tuple(names[1:]), strict_model=not args.any_model)
    except KeyboardInterrupt:
        pass
    finally:
        close = getattr(backend, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):
                close()
    return 0
