"""`python -m sagaline_travel.partner`: the stand-in partners on one port, each kind under its
own path (`http://127.0.0.1:9100/flight`, `/hotel`, `/car`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import uvicorn

from sagaline_travel.partner.app import create_app
from sagaline_travel.partner.kinds import KINDS
from sagaline_travel.partner.ledger import Behaviour

DEFAULT_PORT = 9100


def parser() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(
        prog="python -m sagaline_travel.partner",
        description="Stand-in partner APIs for the travel example. Each option applies to every "
        "kind served; PUT /<kind>/control changes one kind's behaviour while it runs.",
    )
    options.add_argument("--host", default="127.0.0.1")
    options.add_argument("--port", type=int, default=DEFAULT_PORT)
    options.add_argument(
        "--kind",
        action="append",
        choices=sorted(KINDS),
        help="a kind to serve (repeatable; default: all)",
    )
    options.add_argument(
        "--refuse-share", type=float, default=0.0, help="share of bookings refused (0..1)"
    )
    options.add_argument(
        "--refuse-key", action="append", default=[], help="a key always refused (repeatable)"
    )
    options.add_argument(
        "--delay-seconds", type=float, default=0.0, help="how late a delayed answer comes"
    )
    options.add_argument(
        "--delay-share", type=float, default=0.0, help="share of bookings answered late (0..1)"
    )
    options.add_argument(
        "--delay-key", action="append", default=[], help="a key answered late (repeatable)"
    )
    options.add_argument(
        "--delay-times",
        type=int,
        default=1,
        help="requests of a delayed key that are late (0: every one); default 1",
    )
    return options


def main(argv: Sequence[str] | None = None) -> None:
    arguments = parser().parse_args(argv)
    try:
        behaviour = Behaviour(
            refuse_share=arguments.refuse_share,
            refuse_keys=set(arguments.refuse_key),
            delay_seconds=arguments.delay_seconds,
            delay_share=arguments.delay_share,
            delay_keys=set(arguments.delay_key),
            delay_times=arguments.delay_times,
        )
    except ValueError as exc:
        parser().error(str(exc))
    app = create_app(arguments.kind or sorted(KINDS), behaviour)
    uvicorn.run(app, host=arguments.host, port=arguments.port, log_level="warning")


if __name__ == "__main__":
    main()
