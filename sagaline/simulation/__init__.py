"""Deterministic simulation of the saga protocol (`sagaline simulate`).

`world` is the model: one saga of a Saga definition over an in-memory network (`network`), run
by the real Engine, the real participant decisions and the real initiator decisions (`actors`),
with faults a seeded scheduler chooses (`faults`); a calling step's owed call, worker and partner
are in `calls`; `model` is what a run does not change.
`explore` walks it: every schedule up to a bound of faults (exhaustive), or
random schedules from seeds, with shrinking of what violates an invariant.
"""
