"""docs/your-own-saga.md, followed line by line as a new user would: its shell blocks are run in
order, in bash, in a directory outside the repository. They write the `shipping` step package
(the `cat > file <<'EOF'` blocks), `pip install -e .` it into a venv, copy the order Saga with
`shipping` as its third step and start `sagaline up` on it; then, in "another shell", place the
doc's orders (one approved through the step, one it refuses, compensated) and run `sagaline
verify`. The Kubernetes section is checked without a cluster: its Saga by the definition loader
and the operator's manifests, its Containerfile against sagaline's.

What the test changes in the doc's commands, and only that (each must still be found in the doc):
- the venv it activates is one of the test's own, which sees the clone's packages (so that
  `pip install -e .` leaves the clone's `.venv` as it was);
- `/tmp/shipping-step` is a directory of the test's own;
- `sagaline up` gets `--base-port` (free ports), and `localhost:808N` follows it.
Nothing else: no SAGALINE_* variable is inherited, and the step is found by its entry point.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import sysconfig
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sagaline_operator import manifests

from sagaline.domain.definition import load_definition
from sagaline.lab.ports import free_port_block
from sagaline.services.registry import PORTS
from tests.integration.support import unavailable

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "your-own-saga.md"
DOC_DIRECTORY = "/tmp/shipping-step"
DOC_ACTIVATE = '. "$SAGALINE/.venv/bin/activate"'
DOC_PORT = re.compile(r"localhost:(80[89]\d)\b")
UP = re.compile(r"^sagaline up\b.*$", re.MULTILINE)
READY = "Ctrl-C (or SIGTERM) stops everything."  # what `sagaline up` prints once ready
RUN_SECTIONS = ("1.", "2.", "3.")
DEPLOY_SECTION = "4."
NOT_RUN = [  # section 4's commands that need a container engine or a cluster: checked instead
    "docker build -t shipping-step:dev .",
    "kubectl apply -n sagaline -f order-shipping.yaml",
    "kubectl get sagas -n sagaline",
]
READY_WITHIN_S = 180
CACHES = ("__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache")


# -- the doc ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    section: str
    language: str
    text: str


def doc_blocks() -> list[Block]:
    """The fenced blocks of the doc, in order, with the `## ` heading they are under."""
    found: list[Block] = []
    section = ""
    language: str | None = None  # inside a block: its language
    lines: list[str] = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if language is None and line.startswith("## "):
            section = line[3:].strip()
        elif language is None and line.startswith("```"):
            language, lines = line[3:].strip(), []
        elif language is not None and line.startswith("```"):
            found.append(Block(section, language, "\n".join(lines) + "\n"))
            language = None
        elif language is not None:
            lines.append(line)
    return found


def shell_blocks(*sections: str) -> list[str]:
    return [b.text for b in doc_blocks() if b.language == "sh" and b.section.startswith(sections)]


def replaced(blocks: list[str], old: str, new: str) -> list[str]:
    """`old` replaced in each block; some block must say it."""
    assert any(old in text for text in blocks), f"the doc no longer says {old!r}: update the test"
    return [text.replace(old, new) for text in blocks]


def with_ports(text: str, base_port: int) -> str:
    return DOC_PORT.sub(lambda m: f"localhost:{base_port + int(m[1]) - 8080}", text)


def split_at_up(blocks: list[str]) -> tuple[list[str], list[str]]:
    """The blocks up to the one that ends with `sagaline up` (the first shell), and the rest
    (the other shell)."""
    for index, text in enumerate(blocks):
        if UP.search(text):
            assert text.rstrip().splitlines()[-1].startswith("sagaline up"), (
                "`sagaline up` runs in the foreground: it must end its block"
            )
            return blocks[: index + 1], blocks[index + 1 :]
    raise AssertionError("docs/your-own-saga.md runs no `sagaline up`")


# -- the user's machine ----------------------------------------------------------------------------


def require_tools() -> None:
    for tool in ("bash", "curl", "git"):
        unavailable(tool, None if shutil.which(tool) else "not on PATH")
    version = subprocess.run(["curl", "--version"], capture_output=True, text=True).stdout
    found = re.match(r"curl (\d+)\.(\d+)", version)
    too_old = found is None or (int(found[1]), int(found[2])) < (7, 82)
    unavailable("curl --json", f"needs curl >= 7.82: {version[:40]!r}" if too_old else None)


def user_environment(venv: Path | None = None) -> dict[str, str]:
    """A new user's shell: nothing of sagaline's set, no venv active (or `venv`, activated)."""
    hidden = {str(Path(sys.executable).parent), str(ROOT / ".venv" / "bin")}
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("SAGALINE_")
        and key not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "CI"}
    }
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and p not in hidden]
    if venv is not None:
        env["VIRTUAL_ENV"] = str(venv)
        path.insert(0, str(venv / "bin"))
    env["PATH"] = os.pathsep.join(path)
    env["COLUMNS"] = "200"  # rich's tables unwrapped
    return env


def make_venv(directory: Path) -> Path:
    """A venv of the test's own that sees every package of the clone's (a .pth file adds the
    clone's site-packages after its own), with its own pip and its own `sagaline` command:
    what the doc installs goes into it, not into the clone's `.venv`."""
    subprocess.run([sys.executable, "-m", "venv", str(directory)], check=True)
    python = directory / "bin" / "python"
    own = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    clones = sysconfig.get_paths()["purelib"]
    (Path(own) / "clone-packages.pth").write_text(f"import site; site.addsitedir({clones!r})\n")
    [script] = importlib.metadata.entry_points(group="console_scripts", name="sagaline")
    command = directory / "bin" / "sagaline"
    command.write_text(
        f"#!{python}\nimport sys\nfrom {script.module} import {script.attr}\n"
        f"sys.exit({script.attr}())\n"
    )
    command.chmod(0o755)
    return directory


def repository_status() -> list[str]:
    """`git status` of the clone, ignored files included (a stray `.sagaline/`), caches not."""
    lines = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--ignored"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    return sorted(line for line in lines if not any(cache in line for cache in CACHES))


# -- the run -------------------------------------------------------------------------------------


@dataclass
class Tutorial:
    venv: Path
    directory: Path  # the doc's /tmp/shipping-step
    base_port: int
    log: Path  # the first shell's output: pip's, then `sagaline up`'s
    repository_before: list[str]
    other_shell: list[str]  # the blocks after `sagaline up`, as run

    def url(self, service: str, path: str) -> str:
        return f"http://127.0.0.1:{self.base_port + PORTS[service] - PORTS['orchestrator']}{path}"

    def sagaline(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sagaline", *arguments],
            cwd=self.directory,
            env=user_environment(self.venv),
            capture_output=True,
            text=True,
            timeout=60,
        )


def wait_ready(process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_WITHIN_S
    while READY not in log.read_text(errors="replace"):
        if process.poll() is not None:
            raise AssertionError(f"the first shell ended ({process.returncode}):\n{tail(log)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"`sagaline up` not ready in {READY_WITHIN_S} s:\n{tail(log)}")
        time.sleep(0.2)


def tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, as the doc's Ctrl-C: `sagaline up` stops every process it started."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise


@pytest.fixture(scope="module")
def tutorial(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tutorial]:
    """The first shell: sections 1 to 3 up to `sagaline up`, which then runs until the end."""
    require_tools()
    before = repository_status()
    home = tmp_path_factory.mktemp("your_own_saga")
    assert not home.resolve().is_relative_to(ROOT), "the user's directory must be outside"
    venv = make_venv(home / "venv")
    directory = home / "shipping-step"
    base_port = free_port_block(len(PORTS))
    first, other = split_at_up(shell_blocks(*RUN_SECTIONS))
    first = replaced(first, DOC_ACTIVATE, f'. "{venv}/bin/activate"')
    first = replaced(first, DOC_DIRECTORY, str(directory))
    script = UP.sub(lambda m: f"exec {m[0]} --base-port {base_port}", "\n".join(first))
    log = home / "first-shell.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            ["bash", "-e", "-c", script],
            cwd=ROOT,  # "from a clone of sagaline"
            env=user_environment(),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_ready(process, log)
        other = [with_ports(t.replace(DOC_DIRECTORY, str(directory)), base_port) for t in other]
        yield Tutorial(venv, directory, base_port, log, before, other)
    finally:
        stop(process)


@dataclass(frozen=True)
class ShellRun:
    returncode: int
    outputs: list[str]  # what each block printed (stdout and stderr)


def run_blocks(blocks: list[str], cwd: Path, env: dict[str, str]) -> ShellRun:
    """The blocks in one bash, in order, stopping at the first failing command."""
    marker = f"-- block end {uuid.uuid4().hex} --"
    script = "".join(f"{block}\nprintf '\\n%s\\n' '{marker}'\n" for block in blocks)
    done = subprocess.run(
        ["bash", "-e", "-c", script],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=180,
    )
    return ShellRun(done.returncode, [part.strip() for part in done.stdout.split(marker)])


@pytest.fixture(scope="module")
def other_shell(tutorial: Tutorial) -> ShellRun:
    """The doc's "another shell, with the same venv active": the orders, `sagaline verify`."""
    return run_blocks(tutorial.other_shell, ROOT, user_environment(tutorial.venv))


def documents(output: str) -> list[dict[str, Any]]:
    """The JSON objects curl printed one after the other."""
    decoder, found, index = json.JSONDecoder(), [], 0
    while index < len(output):
        if output[index].isspace():
            index += 1
            continue
        document, index = decoder.raw_decode(output, index)
        found.append(document)
    return found


def orders(run: ShellRun) -> dict[str, dict[str, Any]]:
    """The doc's two orders, by customer."""
    placed = [d for d in documents(run.outputs[0]) if "status" in d]
    assert len(placed) == 2, run.outputs[0]
    return {order["customer_id"]: order for order in placed}


def shipment(tutorial: Tutorial, saga_id: str) -> tuple[str, bool] | None:
    """The step's row for the saga, in its own database."""
    database = tutorial.directory / ".sagaline" / "shippingdb.db"
    with sqlite3.connect(database) as connection:
        row = connection.execute(
            "SELECT customer_id, cancelled FROM shipment WHERE saga_id = ?",
            (uuid.UUID(saga_id).hex,),
        ).fetchone()
    return None if row is None else (str(row[0]), bool(row[1]))


# -- what the doc says -------------------------------------------------------------------------


def test_the_step_is_a_package_of_its_own_installed_by_its_entry_point(tutorial: Tutorial) -> None:
    written = {str(p.relative_to(tutorial.directory)) for p in tutorial.directory.rglob("*.py")}
    assert written == {
        "shipping/__init__.py",
        "shipping/step.py",
        "shipping/migrations/0001_shipments.py",
    }
    found = subprocess.run(
        [
            str(tutorial.venv / "bin" / "python"),
            "-c",
            "import importlib.metadata as m, shipping.step as s; "
            "[e] = m.entry_points(group='sagaline.services', name='shipping'); "
            "print(e.value, s.__file__, sep='\\n')",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert found == ["shipping.step:shipping", str(tutorial.directory / "shipping" / "step.py")]
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution("shipping-step")  # not in the clone's own venv


def test_sagaline_up_runs_the_step_on_the_next_port_and_its_own_database(
    tutorial: Tutorial,
) -> None:
    listed = dict(re.findall(r"^(\w+)\s+http://127\.0\.0\.1:(\d+)$", tail(tutorial.log), re.M))
    ports = {service: int(port) for service, port in listed.items()}
    assert ports.keys() == {*PORTS, "shipping"}, tail(tutorial.log)
    for service in PORTS:
        assert ports[service] == tutorial.base_port + PORTS[service] - PORTS["orchestrator"]
    assert ports["shipping"] > max(ports[service] for service in PORTS)
    assert (tutorial.directory / ".sagaline" / "shippingdb.db").is_file()
    assert (tutorial.directory / ".sagaline" / "api-token").is_file()


def test_an_order_completes_through_the_third_step(
    tutorial: Tutorial, other_shell: ShellRun
) -> None:
    order = orders(other_shell)["ada"]
    assert order["status"] == "APPROVED", order
    assert shipment(tutorial, order["id"]) == ("ada", False)
    trace = tutorial.sagaline("trace", order["id"], "--url", tutorial.url("orchestrator", ""))
    assert trace.returncode == 0, trace.stderr
    assert "COMPLETED" in trace.stdout
    assert "shipping.executed" in trace.stdout
    assert f'shipping  {{"shipment": "{order["id"]}"}}' in trace.stdout


def test_an_order_the_step_refuses_is_compensated(
    tutorial: Tutorial, other_shell: ShellRun
) -> None:
    order = orders(other_shell)["noship-bob"]
    assert order["status"] == "REJECTED", order
    assert order["reason"] == "shipping: no address to ship to for noship-bob"
    assert shipment(tutorial, order["id"]) is None
    account = httpx.get(tutorial.url("payment", "/accounts/noship-bob"), timeout=10).json()
    product = httpx.get(tutorial.url("stock", "/products/p1"), timeout=10).json()
    assert account["balance"] == "100.00"
    assert product["quantity"] == 9
    trace = tutorial.sagaline("trace", order["id"], "--url", tutorial.url("orchestrator", ""))
    assert trace.returncode == 0, trace.stderr
    for event in ("shipping.failed", "payment.compensated", "stock.compensated"):
        assert event in trace.stdout, trace.stdout
    assert "COMPENSATED" in trace.stdout


def test_sagaline_verify_holds(other_shell: ShellRun) -> None:
    assert other_shell.returncode == 0, other_shell.outputs
    assert len(other_shell.outputs) == 3  # the orders' block, verify's, and after the last
    assert "all invariants hold" in other_shell.outputs[1]
    assert "'orders': 2, 'sagas': 2" in other_shell.outputs[1]


def test_the_saga_deploys_the_step_in_its_own_image(tutorial: Tutorial) -> None:
    """Section 4, without a cluster: what it runs is run, what it would apply is built."""
    skipped: list[str] = []
    blocks = []
    for text in shell_blocks(DEPLOY_SECTION):
        kept: list[str] = []
        for line in text.splitlines():
            (skipped if line.startswith(("docker ", "kubectl ")) else kept).append(line)
        blocks.append("\n".join(kept))
    assert skipped == NOT_RUN, "a new command in section 4: run it or check it here"
    run = run_blocks(blocks, tutorial.directory, user_environment(tutorial.venv))
    assert run.returncode == 0, run.outputs

    definition = load_definition(tutorial.directory / "order-shipping.yaml")
    assert definition.step_names == ["payment", "stock", "shipping"]
    objects = manifests.workloads(definition, "sagaline")
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    pod = deployments["shipping-service"]["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["initContainers"] + pod["containers"]}
    assert {"migrate", "relay", "app"} <= containers.keys()
    for name in ("migrate", "relay", "app"):
        container = containers[name]
        assert container["image"] == "shipping-step:dev", name
        env = {e["name"]: e for e in container["env"]}
        assert env["SAGALINE_STEPS"]["value"] == "shipping.step:shipping", name
        assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
            "name": "shipping-db",
            "key": "uri",
        }
    payment = deployments["payment-service"]["spec"]["template"]["spec"]["containers"]
    assert {c["image"] for c in payment} == {"sagaline:dev"}


def test_the_step_image_is_built_on_sagaline_s(tutorial: Tutorial) -> None:
    """The step's Containerfile (written by section 4), read without a container engine: it
    starts from the image sagaline's Containerfile builds, rebuilds its venv on the same Python,
    and copies only what the package is."""
    ours = (ROOT / "Containerfile").read_text()
    theirs = (tutorial.directory / "Containerfile").read_text()
    [python_image] = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", ours, re.M)
    assert "ENV VIRTUAL_ENV=/opt/venv" in ours
    assert "-t sagaline:dev ." in ours
    froms = re.findall(r"^FROM (\S+)(?: AS (\S+))?$", theirs, re.M)
    assert froms == [("sagaline:dev", "sagaline"), (python_image, "build"), ("sagaline", "")]
    for source in re.findall(r"^COPY (\S+) /src/", theirs, re.M):
        assert (tutorial.directory / source).exists(), source
    assert "pip --python /opt/venv/bin/python install" in theirs
    assert theirs.rstrip().endswith("COPY --from=build /opt/venv /opt/venv")


def test_no_file_of_sagaline_changed(tutorial: Tutorial, other_shell: ShellRun) -> None:
    assert repository_status() == tutorial.repository_before
