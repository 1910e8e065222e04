"""The `sagaline` command line: the typer app, and where each command comes from.

`pods`: what runs in a pod (serve, relay, migrate), the container image's commands. `local`: the
stack on one machine (up, demo, verify, trace). `measuring`: bench, bench relay, chaos, simulate.
The last two are the lab's (`sagaline[lab]`, not in the image): they import it when they run, so
this app imports without it, and there they say what to install.
"""

from __future__ import annotations

import typer

from sagaline.cli import local, measuring, pods
from sagaline.cli.sagas import saga_app

app = typer.Typer(
    help="Orchestrated sagas over Kafka with a transactional outbox in every service.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals may hold passwords
)
for command in (
    pods.serve,
    pods.relay,
    pods.migrate,
    local.up,
    local.demo,
    measuring.chaos,
    measuring.simulate,
    local.verify,
    local.trace,
):
    app.command()(command)

bench_app = typer.Typer(
    help="Measure the stack (sagas/s, latency, CPU, memory) or one relay (`bench relay`).",
    no_args_is_help=False,
)
bench_app.callback(invoke_without_command=True)(measuring.bench)
bench_app.command("relay")(measuring.bench_relay)
app.add_typer(bench_app, name="bench")
app.add_typer(saga_app, name="saga")
