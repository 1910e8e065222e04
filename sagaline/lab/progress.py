"""The progress bar of a command that counts what it has done (orders, schedules)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def counting_progress(console: Console, *, show: bool, label_width: int) -> Progress:
    """Label, bar, done/total and elapsed time; silent when `show` is false (`--json`)."""
    return Progress(
        TextColumn(f"{{task.description:<{label_width}}}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not show,
        transient=False,
    )
