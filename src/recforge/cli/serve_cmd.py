"""``recforge serve``: the HTTP recommendation service (`recforge.serving.app`) on uvicorn.

``--model`` is a registry folder (one sub-folder per model version, as ``recforge train
--out REGISTRY/NAME`` writes them) or one model folder; ``--config`` the service's TOML
file (`recforge.serving.config`). The configuration and the folder are checked before the
server starts (exit 2 with one line). With ``--workers`` above 1 the Prometheus metrics are
shared through a fresh ``PROMETHEUS_MULTIPROC_DIR`` (`recforge.serving.metrics`). Each
worker runs its linear algebra on one thread (a request is a few small products; threads
would only compete between workers).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from recforge.cli.options import option_type
from recforge.errors import InputError
from recforge.params import Integer, Text

PORT = Integer(0, 65_535)
WORKERS = Integer(1, 64)
HOST = Text(r"[A-Za-z0-9.:\[\]-]{1,255}", "a host name or IP address")


def configure(name: str, parser: argparse.ArgumentParser) -> None:
    """The arguments of ``recforge serve``."""
    parser.add_argument("--model", required=True,
                        help="a registry folder of model versions, or one saved model folder")
    parser.add_argument("--host", type=option_type(HOST, str), default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=option_type(PORT), default=8000,
                        help="port (default 8000; 0: any free port)")
    parser.add_argument("--workers", type=option_type(WORKERS), default=1,
                        help="uvicorn worker processes (default 1)")
    parser.add_argument("--config", default=None, help="the service's TOML configuration")
    parser.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from recforge.serving.app import CONFIG_ENV, MODEL_ENV
    from recforge.serving.config import load_config
    from recforge.serving.metrics import MULTIPROC_ENV

    model = Path(args.model)
    if not model.is_dir():
        raise InputError(f"--model {model}: no such folder")
    if args.config is not None and not Path(args.config).is_file():
        raise InputError(f"--config {args.config}: no such file")
    load_config(model, args.config)  # every problem reported before the server starts
    try:
        import uvicorn
    except ImportError:
        raise InputError("recforge serve needs the serve extra: pip install "
                         "'recforge[serve]'") from None
    os.environ[MODEL_ENV] = str(model.resolve())
    os.environ[CONFIG_ENV] = "" if args.config is None else str(Path(args.config).resolve())
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(variable, "1")
    if args.workers > 1 and not os.environ.get(MULTIPROC_ENV):
        os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="recforge-metrics-")
    uvicorn.run("recforge.serving.app:app_from_env", factory=True, host=args.host,
                port=args.port, workers=args.workers, access_log=False, log_level="warning")
    return 0
