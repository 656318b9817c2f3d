"""The ledger's transition table and the names it shares with Ark (pure)."""

from __future__ import annotations

import pytest

from dropzone.ark import models
from dropzone.ledger import (
    TRANSITIONS,
    InvalidTransition,
    State,
    check_transition,
)
from dropzone.ledger import model as ledger_model

# The specification, written out rather than derived from the code under test.
ALLOWED = {
    (State.BASELINE, State.PENDING),
    (State.WAITING, State.PENDING),
    (State.WAITING, State.REJECTED),
    (State.PENDING, State.SUBMITTING),
    (State.PENDING, State.INVALID),
    (State.PENDING, State.REJECTED),
    (State.SUBMITTING, State.SUBMITTED),
    (State.SUBMITTING, State.DUPLICATE),
    (State.SUBMITTING, State.REJECTED),
    (State.SUBMITTING, State.INVALID),
    (State.SUBMITTING, State.PENDING),
    (State.DUPLICATE, State.PENDING),
    (State.INVALID, State.PENDING),
    (State.REJECTED, State.PENDING),
}


@pytest.mark.parametrize("old", list(State))
@pytest.mark.parametrize("new", list(State))
def test_transition_table(old: State, new: State) -> None:
    """Exactly the transitions of design section 2 (and the brief's additions) are allowed."""
    if (old, new) in ALLOWED:
        check_transition(old, new)
    else:
        with pytest.raises(InvalidTransition) as caught:
            check_transition(old, new)
        assert (caught.value.old, caught.value.new) == (old, new)


def test_transition_table_covers_every_state() -> None:
    """Every state has a row, so a new state cannot be added without deciding its moves."""
    assert set(TRANSITIONS) == set(State)


def test_phase_names_match_the_ark_models() -> None:
    """The ledger spells Ark's phases itself (in SQL too); they must stay Ark's."""
    assert {str(p) for p in models.TERMINAL_PHASES} == ledger_model.TERMINAL_PHASES
    assert {str(p) for p in models.ACTIVE_PHASES} == ledger_model.ACTIVE_PHASES
