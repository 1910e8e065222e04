"""The travel example's stand-in partner as the example runs it: `python -m
sagaline_travel.partner` on a port, a real HTTP client with a time-out."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from sagaline.lab.ports import free_port

FLIGHT = {"traveller": "Ada", "destination": "LIS", "date": "2027-03-01"}
Start = Callable[..., str]


@pytest.fixture
def start_partner(tmp_path: Path) -> Iterator[Start]:
    """Starts `python -m sagaline_travel.partner` with options; answers its base URL once it
    answers /stats; stops what it started."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*options: str) -> str:
        port = free_port()
        log = (tmp_path / f"partner-{port}.log").open("wb")
        command = [sys.executable, "-m", "sagaline_travel.partner", "--port", str(port), *options]
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        started.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (tmp_path / f"partner-{port}.log").read_text()
            try:
                if httpx.get(f"{url}/stats", timeout=1).status_code == 200:
                    return url
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the partner did not answer within 30 s"
            time.sleep(0.05)

    yield start
    for process in started:
        process.terminate()
        process.wait(timeout=10)


def test_an_answer_that_times_out_leaves_one_booking_the_retry_finds(start_partner: Start) -> None:
    """A delayed key: the caller gives up, the booking was made all the same; the retry with the
    same key answers that booking, and the partner counts one booking, one duplicate."""
    url = start_partner("--delay-key", "s1:flight:apply", "--delay-seconds", "3")
    headers = {"Idempotency-Key": "s1:flight:apply"}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{url}/flight/bookings", json=FLIGHT, headers=headers, timeout=0.5)
    standing = httpx.get(f"{url}/flight/bookings/s1:flight:apply").json()
    assert standing["status"] == "booked"
    retry = httpx.post(f"{url}/flight/bookings", json=FLIGHT, headers=headers, timeout=2)
    assert retry.status_code == 200
    assert retry.json()["booking_id"] == standing["booking_id"]
    stats = httpx.get(f"{url}/flight/stats").json()
    assert (stats["bookings_made"], stats["duplicates_absorbed"]) == (1, 1)


def test_the_command_line_serves_the_kinds_asked_with_their_refusals(start_partner: Start) -> None:
    url = start_partner("--kind", "flight", "--refuse-share", "1")
    response = httpx.post(
        f"{url}/flight/bookings", json=FLIGHT, headers={"Idempotency-Key": "s1:flight:apply"}
    )
    assert response.status_code == 409
    assert response.json() == {"detail": "no flight available"}
    assert httpx.get(f"{url}/hotel/stats").status_code == 404
    assert list(httpx.get(f"{url}/stats").json()) == ["flight"]


def test_a_bad_option_is_refused_with_the_reason() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sagaline_travel.partner", "--refuse-share", "1.5"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "refuse_share" in result.stderr
