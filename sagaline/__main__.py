"""`python -m sagaline`: the command line, as the stack starts each of its processes."""

from sagaline.cli import app

app()
