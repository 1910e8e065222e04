"""Ports chosen for a server that binds them later: outside the kernel's ephemeral range, where
an outgoing connection cannot take them first, and never the same twice."""

from __future__ import annotations

import socket

import pytest

from sagaline.lab import ports


def ephemeral_low() -> int:
    return int(ports.EPHEMERAL_RANGE.read_text().split()[0])


@pytest.mark.skipif(not ports.EPHEMERAL_RANGE.exists(), reason="no ephemeral range to read")
def test_ports_are_chosen_below_the_ephemeral_range() -> None:
    chosen = [ports.free_port() for _ in range(200)]

    assert all(ports.LOWEST <= port < ephemeral_low() for port in chosen)


def test_a_port_is_never_handed_out_twice() -> None:
    chosen = [ports.free_port() for _ in range(300)]
    base = ports.free_port_block(4)

    assert len(set(chosen)) == len(chosen)
    assert set(range(base, base + 4)).isdisjoint(chosen)


def offer(monkeypatch: pytest.MonkeyPatch, bases: list[int]) -> None:
    """The random choice offers `bases`, in order, as if nothing had been handed out yet."""
    offered = iter(bases)
    monkeypatch.setattr(ports, "_handed_out", set())
    monkeypatch.setattr(ports._random, "randrange", lambda low, high: next(offered))


def test_a_port_something_listens_on_is_passed_over(monkeypatch: pytest.MonkeyPatch) -> None:
    taken = ports.free_port_block(2)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", taken))
        listener.listen()
        offer(monkeypatch, [taken, taken + 1])

        assert ports.free_port() == taken + 1


def test_a_block_is_free_throughout(monkeypatch: pytest.MonkeyPatch) -> None:
    """A base whose third port is taken is passed over for the next whole block."""
    base = ports.free_port_block(7)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", base + 2))
        listener.listen()
        offer(monkeypatch, [base, base + 3])

        assert ports.free_port_block(4) == base + 3
