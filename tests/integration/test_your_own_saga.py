"""docs/your-own-saga.md, followed line by line as a new user would. Its shell blocks are typed, in
order, into two bash shells, from a clone, into a directory outside the repository: the first
writes the `shipping` step package (the `cat > file <<'EOF'` blocks), `pip install -e .` it,
copies the order Saga with `shipping` as its third step and runs `sagaline up` on it in the
foreground; the other ("another shell, with the same venv active") places the doc's orders (one
approved through the step, one it refuses) and runs `sagaline verify`. When the doc restarts the
stack with the steps in parallel, the first shell gets a Ctrl-C (SIGINT) and the next block; the
other then places an order stock refuses, whose shipment the step's `undo` cancels. The
Kubernetes section is run but for its `docker` and `kubectl` lines, checked instead: its Saga by
the definition loader and the operator's manifests, its Containerfile against sagaline's.

What the test changes in the doc's commands, and only that (each must still be found in it):
- the venv it activates is one of the test's own, which sees the clone's packages (a .pth file)
  and has its own pip and `sagaline` command, so that `pip install -e .` leaves the clone's
  `.venv` as it was;
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sagaline_operator.manifests import workloads

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
FIRST, OTHER = "first shell", "other shell"
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


def in_shells(blocks: list[str]) -> list[tuple[str, str]]:
    """Each block with the shell it is typed in: the first shell's up to `sagaline up`, which
    ends its block (it runs in the foreground), then the other shell's until the next."""
    shell, typed = FIRST, []
    for text in blocks:
        if UP.search(text):
            assert text.rstrip().splitlines()[-1].startswith("sagaline up"), (
                "`sagaline up` runs in the foreground: it must end its block"
            )
            typed.append((FIRST, text))
            shell = OTHER
        else:
            typed.append((shell, text))
    assert OTHER in {shell for shell, _ in typed}, "docs/your-own-saga.md runs no `sagaline up`"
    return typed


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
        and key not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"}
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
    made = subprocess.run(
        [sys.executable, "-m", "venv", str(directory)], capture_output=True, text=True
    )
    unavailable("a venv with pip", (made.stderr.strip() or "failed") if made.returncode else None)
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


class Shell:
    """A bash the doc's blocks are typed into one after the other, as a user would: its
    directory, its variables and its venv carry from one block to the next; `set -e`: a failing
    command ends it. Its output goes to a log, read back block by block."""

    def __init__(self, name: str, home: Path, env: dict[str, str]) -> None:
        self.name = name
        self.log = home / f"{name.replace(' ', '-')}.log"
        with open(self.log, "wb") as output:
            self.process = subprocess.Popen(
                ["bash", "-e"],
                cwd=ROOT,  # "from a clone of sagaline"
                env=env,
                stdin=subprocess.PIPE,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self, lines: int = 40) -> str:
        return f"{self.name}:\n" + "\n".join(self.output().splitlines()[-lines:])

    def type(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text.encode())
        self.process.stdin.flush()

    def wait_for(self, done: Callable[[str], bool], within_s: float, what: str) -> str:
        deadline = time.monotonic() + within_s
        while not done(output := self.output()):
            if self.process.poll() is not None:
                raise AssertionError(
                    f"{what}: the shell ended ({self.process.returncode})\n{self.tail()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not in {within_s} s\n{self.tail()}")
            time.sleep(0.1)
        return output

    def run(self, block: str, within_s: float = 180) -> str:
        """What the block printed (stdout and stderr), once it is done."""
        start = len(self.output())
        marker = f"-- block done {uuid.uuid4().hex} --"
        self.type(f"{block}\nprintf '\\n%s\\n' '{marker}'\n")
        output = self.wait_for(lambda text: marker in text[start:], within_s, block[:60])
        return output[start : output.index(marker, start)].strip()

    def start_up(self, block: str) -> None:
        """A block ending with `sagaline up`: typed, then waited for until the stack is ready."""
        ready = self.output().count(READY)
        self.type(block)
        self.wait_for(lambda text: text.count(READY) > ready, READY_WITHIN_S, "sagaline up")

    def foreground(self) -> list[int]:
        """The command bash runs in the foreground (its one child), if any."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()]

    def interrupt(self) -> None:
        """Ctrl-C: SIGINT to the command in the foreground, then the prompt back."""
        running = self.foreground()
        assert len(running) == 1, f"{self.name}: no one command in the foreground: {running}"
        os.kill(running[0], signal.SIGINT)
        self.run(":", within_s=60)

    def close(self) -> None:
        """End of input: bash exits. Whatever still runs in it (a test that failed half-way)
        gets SIGTERM first, which `sagaline up` takes as Ctrl-C, stopping what it started."""
        if self.process.poll() is None:
            for pid in self.foreground():
                os.kill(pid, signal.SIGTERM)
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@dataclass
class Tutorial:
    venv: Path
    directory: Path  # the doc's /tmp/shipping-step
    base_port: int
    first: Shell
    other: Shell
    outputs: list[tuple[str, str]]  # each block the other shell ran, and what it printed
    repository_before: list[str]

    def url(self, service: str, path: str) -> str:
        return f"http://127.0.0.1:{self.base_port + PORTS[service] - PORTS['orchestrator']}{path}"

    def printed_by(self, command: str) -> list[str]:
        return [output for block, output in self.outputs if command in block]

    def sagaline(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sagaline", *arguments],
            cwd=self.directory,
            env=user_environment(self.venv),
            capture_output=True,
            text=True,
            timeout=60,
        )


def typed_blocks(venv: Path, directory: Path, base_port: int) -> list[tuple[str, str]]:
    """Sections 1 to 3, each block with its shell, and the test's changes (module docstring)."""
    typed = in_shells(shell_blocks(*RUN_SECTIONS))
    texts = [text for _, text in typed]
    texts = replaced(texts, DOC_ACTIVATE, f'. "{venv}/bin/activate"')
    texts = replaced(texts, DOC_DIRECTORY, str(directory))
    texts = [UP.sub(lambda m: f"{m[0]} --base-port {base_port}", text) for text in texts]
    texts = [with_ports(text, base_port) for text in texts]
    return [(shell, text) for (shell, _), text in zip(typed, texts, strict=True)]


@pytest.fixture(scope="module")
def tutorial(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tutorial]:
    """Sections 1 to 3, to the end, in two shells; the last `sagaline up` is left running for
    the tests, and stopped after them."""
    require_tools()
    before = repository_status()
    home = tmp_path_factory.mktemp("your_own_saga")
    assert not home.resolve().is_relative_to(ROOT), "the user's directory must be outside"
    venv = make_venv(home / "venv")
    directory = home / "shipping-step"
    base_port = free_port_block(len(PORTS))
    first = Shell(FIRST, home, user_environment())
    other = Shell(OTHER, home, user_environment(venv))  # "with the same venv active"
    outputs: list[tuple[str, str]] = []
    running = False
    try:
        for shell, text in typed_blocks(venv, directory, base_port):
            if shell == FIRST and UP.search(text):
                if running:
                    first.interrupt()  # "Stop `sagaline up` (Ctrl-C) and start it again"
                first.start_up(text)
                running = True
            elif shell == FIRST:
                first.run(text)
            else:
                outputs.append((text, other.run(text)))
        yield Tutorial(venv, directory, base_port, first, other, outputs, before)
    finally:
        first.close()
        other.close()


def documents(output: str) -> list[dict[str, Any]]:
    """The JSON objects curl printed one after the other, up to what is not one."""
    decoder, found, index = json.JSONDecoder(), [], 0
    while index < len(output):
        if output[index].isspace():
            index += 1
            continue
        try:
            document, index = decoder.raw_decode(output, index)
        except json.JSONDecodeError:
            break
        found.append(document)
    return found


def orders(tutorial: Tutorial) -> list[dict[str, Any]]:
    """The doc's orders, as `Prefer: wait=30` answered them, in order."""
    printed = [d for output in tutorial.printed_by("/orders") for d in documents(output)]
    return [d for d in printed if "status" in d and "customer_id" in d]


def shipment(tutorial: Tutorial, saga_id: str) -> tuple[str, bool] | None:
    """The step's row for the saga, in its own database."""
    database = tutorial.directory / ".sagaline" / "shippingdb.db"
    with sqlite3.connect(database) as connection:
        row = connection.execute(
            "SELECT customer_id, cancelled FROM shipment WHERE saga_id = ?",
            (uuid.UUID(saga_id).hex,),
        ).fetchone()
    return None if row is None else (str(row[0]), bool(row[1]))


def trace(tutorial: Tutorial, saga_id: str) -> str:
    """`sagaline trace <order id>` (the doc's prose), against this stack's orchestrator."""
    done = tutorial.sagaline("trace", saga_id, "--url", tutorial.url("orchestrator", ""))
    assert done.returncode == 0, done.stderr
    return done.stdout


def balance(tutorial: Tutorial, account: str) -> str:
    return str(
        httpx.get(tutorial.url("payment", f"/accounts/{account}"), timeout=10).json()["balance"]
    )


def stock(tutorial: Tutorial, product: str) -> int:
    return int(
        httpx.get(tutorial.url("stock", f"/products/{product}"), timeout=10).json()["quantity"]
    )


# -- what the doc says -------------------------------------------------------------------------


def test_every_command_of_the_doc_is_run_or_checked() -> None:
    blocks = doc_blocks()
    sections = {b.section.split()[0] for b in blocks if b.language == "sh"}
    assert sections == {*RUN_SECTIONS, DEPLOY_SECTION}, "a new section's commands: run them here"
    assert {b.language for b in blocks} == {"sh", "python"}
    for block in (b for b in blocks if b.language == "python"):
        compile(block.text, str(DOC), "exec")  # a fragment of a step: at least Python


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
    output = tutorial.first.output()
    listed = dict(re.findall(r"^(\w+)\s+http://127\.0\.0\.1:(\d+)$", output, re.M))
    ports = {service: int(port) for service, port in listed.items()}
    assert ports.keys() == {*PORTS, "shipping"}, tutorial.first.tail()
    for service in PORTS:
        assert ports[service] == tutorial.base_port + PORTS[service] - PORTS["orchestrator"]
    assert ports["shipping"] > max(ports[service] for service in PORTS)
    assert (tutorial.directory / ".sagaline" / "shippingdb.db").is_file()
    assert (tutorial.directory / ".sagaline" / "api-token").is_file()


def test_an_order_completes_through_the_third_step(tutorial: Tutorial) -> None:
    order = orders(tutorial)[0]
    assert (order["customer_id"], order["status"]) == ("ada", "APPROVED"), order
    assert shipment(tutorial, order["id"]) == ("ada", False)
    timeline = trace(tutorial, order["id"])
    assert "COMPLETED" in timeline and "shipping.executed" in timeline, timeline
    assert f'shipping  {{"shipment": "{order["id"]}"}}' in timeline


def test_an_order_the_step_refuses_is_compensated(tutorial: Tutorial) -> None:
    order = orders(tutorial)[1]
    assert (order["customer_id"], order["status"]) == ("noship-bob", "REJECTED"), order
    assert order["reason"] == "shipping: no address to ship to for noship-bob"
    assert shipment(tutorial, order["id"]) is None
    assert balance(tutorial, "noship-bob") == "100.00"
    timeline = trace(tutorial, order["id"])
    assert "COMPENSATED" in timeline, timeline
    for event in ("shipping.failed", "payment.compensated", "stock.compensated"):
        assert event in timeline, timeline


def test_a_later_refusal_compensates_the_step_with_its_undo(tutorial: Tutorial) -> None:
    order = orders(tutorial)[2]
    assert (order["customer_id"], order["status"]) == ("ada", "REJECTED"), order
    assert order["reason"] == "stock: out of stock: product p1"
    assert shipment(tutorial, order["id"]) in {("ada", True), None}
    timeline = trace(tutorial, order["id"])
    assert "parallel" in timeline and "COMPENSATED" in timeline, timeline
    assert "shipping.compensated" in timeline, timeline
    assert balance(tutorial, "ada") == "90.00"
    assert stock(tutorial, "p1") == 9


def test_sagaline_verify_holds_after_each_run(tutorial: Tutorial) -> None:
    printed = tutorial.printed_by("sagaline verify")
    assert len(printed) == 2
    for output, placed in zip(printed, (2, 3), strict=True):
        assert "all invariants hold" in output, output
        assert f"'orders': {placed}, 'sagas': {placed}" in output, output


def test_the_saga_deploys_the_step_in_its_own_image(tutorial: Tutorial) -> None:
    """Section 4, without a cluster: what it runs is run, what it would apply is built."""
    skipped: list[str] = []
    for text in shell_blocks(DEPLOY_SECTION):
        kept: list[str] = []
        for line in text.splitlines():
            (skipped if line.startswith(("docker ", "kubectl ")) else kept).append(line)
        tutorial.other.run("\n".join(kept))  # in the step's directory, as the doc's user is
    assert skipped == NOT_RUN, "a new command in section 4: run it or check it here"

    definition = load_definition(tutorial.directory / "order-shipping.yaml")
    assert definition.step_names == ["payment", "stock", "shipping"]
    objects = workloads(definition, "sagaline")
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    pod = deployments["shipping-service"]["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["initContainers"] + pod["containers"]}
    assert containers.keys() == {"migrate", "relay", "app"}
    for name, container in containers.items():
        assert container["image"] == "shipping-step:dev", name
        assert "shipping" in container["command"], name
        env = {e["name"]: e for e in container["env"]}
        assert env["SAGALINE_STEPS"]["value"] == "shipping.step:shipping", name
        assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
            "name": "shipping-db",
            "key": "uri",
        }
    payment = deployments["payment-service"]["spec"]["template"]["spec"]["containers"]
    assert {c["image"] for c in payment} == {"sagaline:dev"}


def test_the_step_image_is_built_on_sagaline_s(tutorial: Tutorial) -> None:
    """The step's Containerfile (section 4 wrote it), read without a container engine: it
    starts from the image sagaline's Containerfile builds, adds the package to its venv on the
    same Python, and copies only what the package is."""
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


def test_no_file_of_sagaline_changed(tutorial: Tutorial) -> None:
    assert repository_status() == tutorial.repository_before
