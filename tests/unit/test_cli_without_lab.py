"""The command line in the container image, which holds the product only: without the lab's
subpackages (`sagaline[lab]`) the pod's commands work and the lab's say what to install."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

# Blocked in a fresh interpreter, as they are absent from the image (see .dockerignore).
PROGRAM = textwrap.dedent(
    """
    import json, sys

    for name in ("sagaline.lab", "sagaline.measure", "sagaline.simulation", "sagaline.traces"):
        sys.modules[name] = None  # an import of it, or of a module in it, fails

    from typer.testing import CliRunner

    from sagaline.cli import app

    results = {}
    for arguments in (["--help"], ["serve", "--help"], ["relay", "--help"], ["migrate", "--help"],
                      ["demo"], ["up"], ["verify"], ["trace", "x"], ["simulate"], ["bench"],
                      ["bench", "relay"], ["chaos"]):
        result = CliRunner().invoke(app, arguments, env={"COLUMNS": "200"})
        results[" ".join(arguments)] = {"code": result.exit_code, "output": result.output}
    lab = sorted(n for n in sys.modules if n.split(".")[:2] in (["sagaline", "lab"],
        ["sagaline", "measure"], ["sagaline", "simulation"], ["sagaline", "traces"])
        and sys.modules[n] is not None)
    print(json.dumps({"results": results, "lab_imported": lab}))
    """
)


def run_without_lab() -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_the_pod_commands_work_and_the_lab_commands_name_the_extra() -> None:
    ran = run_without_lab()
    results = ran["results"]
    assert isinstance(results, dict)
    assert ran["lab_imported"] == []

    listing = results["--help"]
    assert listing["code"] == 0, listing["output"]
    for command in ("serve", "relay", "migrate"):
        assert command in listing["output"]
        assert results[f"{command} --help"]["code"] == 0, results[f"{command} --help"]["output"]

    for command in ("demo", "up", "verify", "trace x", "simulate", "bench", "bench relay", "chaos"):
        refused = results[command]
        assert refused["code"] == 2, (command, refused["output"])
        assert "pip install 'sagaline[lab]'" in " ".join(refused["output"].split()), command
