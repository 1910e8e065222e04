"""`python -m sagaline_operator [run]` runs the operator; `render-topics` writes k8s/topics/."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from sagaline.domain.definition import load_definition
from sagaline_operator.config import OperatorConfig
from sagaline_operator.manifests.topics import render_topics

ROOT = Path(__file__).resolve().parents[2]


def write_topics(saga_file: Path, out: Path, api_version: str) -> list[Path]:
    """Replace the KafkaTopic manifests in `out` with those of the Saga in `saga_file`."""
    files = render_topics(load_definition(saga_file), api_version)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.yaml"):
        if stale.name not in files:
            stale.unlink()
    written = []
    for name, text in files.items():
        path = out / name
        path.write_text(text)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sagaline_operator")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("run", help="run the operator (the default)")
    topics = commands.add_parser("render-topics", help="write the Saga's KafkaTopic manifests")
    topics.add_argument("--saga", type=Path, default=ROOT / "k8s" / "sagas" / "order.yaml")
    topics.add_argument("--out", type=Path, default=ROOT / "k8s" / "topics")
    topics.add_argument("--api-version", default=OperatorConfig().strimzi_api_version)
    args = parser.parse_args(argv)

    if args.command == "render-topics":
        for path in write_topics(args.saga, args.out, args.api_version):
            print(path)
        return
    from sagaline_operator.handlers import run

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Kopf logs every handler and timer run at INFO ("Timer 'resync' succeeded." per Saga every
    # few seconds); what a pass changed is in the operator's own log lines and Events.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    run(OperatorConfig())


if __name__ == "__main__":
    main()
