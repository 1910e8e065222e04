"""The travel example (examples/travel) as a package a team would ship: its Saga file names the
steps its entry points declare, each step is an external-call step of `sagaline.sdk`, and each
step's command reads the saga's initial payload plus the results of the steps before it."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
import yaml

from sagaline.domain.definition import load_definition
from sagaline.sdk import Step

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "travel"
SAGA_FILE = EXAMPLE / "saga.yaml"
STEPS = ["flight", "hotel", "car"]
START = {"traveller": "Ada", "destination": "LIS", "date": "2027-03-01", "nights": 3}
# What each partner answers becomes the step's result (sagaline_travel.flight|hotel|car).
RESULTS = {
    "flight": {"flight_booking": "FL-000001", "arrival": "2027-03-01T14:05"},
    "hotel": {"hotel_booking": "HO-000001", "check_out": "2027-03-04"},
    "car": {"car_booking": "CA-000001"},
}


def saga_document() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(SAGA_FILE.read_text())
    return document


def test_the_saga_file_names_the_steps_the_entry_points_declare() -> None:
    document = saga_document()
    assert document["metadata"]["name"] == "travel"
    assert document["spec"]["initiator"] == {"enabled": False}
    steps = document["spec"]["steps"]
    assert [step["name"] for step in steps] == STEPS
    declared = {entry.name: entry.value for entry in entry_points(group="sagaline.services")}
    for step in steps:
        assert step["declaration"] == declared[step["name"]]
        assert step["declaration"] == f"sagaline_travel.{step['name']}:{step['name']}"


def test_the_saga_file_is_a_valid_saga() -> None:
    definition = load_definition(SAGA_FILE)
    assert definition.spec.initiator_name is None
    assert definition.step_names == STEPS
    assert [step.declaration for step in definition.spec.steps] == [
        f"sagaline_travel.{name}:{name}" for name in STEPS
    ]


@pytest.mark.parametrize("name", STEPS)
def test_each_declaration_is_an_external_call_step_of_its_name(name: str) -> None:
    module_name, _, attribute = f"sagaline_travel.{name}:{name}".partition(":")
    step = getattr(importlib.import_module(module_name), attribute)
    assert isinstance(step, Step)
    assert step.name == name
    assert step.calls is not None


def test_each_command_reads_the_start_and_the_results_before_it() -> None:
    """The orchestrator's rule: a step's command is the initial payload plus the keys of the
    earlier steps' results (never overwriting one): so the hotel gets the flight's arrival, the
    car the arrival and the hotel's check-out."""
    from sagaline_travel.car import RentCar
    from sagaline_travel.flight import BookFlight
    from sagaline_travel.hotel import BookHotel

    payload = dict(START)
    commands = {}
    for name, model in (("flight", BookFlight), ("hotel", BookHotel), ("car", RentCar)):
        commands[name] = model.model_validate(payload)
        payload = {**RESULTS[name], **payload}
    assert commands["hotel"].model_dump(mode="json")["arrival"] == "2027-03-01T14:05:00"
    assert commands["car"].model_dump(mode="json")["check_out"] == "2027-03-04"
    for model in (BookHotel, RentCar):
        with pytest.raises(ValueError, match="arrival"):
            model.model_validate(START)  # without the flight's result
