"""The one-line status callback of long-running lab steps (a launcher's build, a stack's start)."""

from __future__ import annotations

from collections.abc import Callable

StatusLine = Callable[[str], None]
"""Called with a short human line ("starting PostgreSQL", "building kwok") as a step begins."""
