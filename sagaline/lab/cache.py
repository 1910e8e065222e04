"""Where heavy downloads and builds live (Kafka's jars, the Kubernetes tools): outside the repo,
shared by every checkout, `SAGALINE_CACHE_DIR` or `~/.cache/sagaline`."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    configured = os.environ.get("SAGALINE_CACHE_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "sagaline"
