"""The frozen dataclasses whose ``__init__`` is written out by hand (replay builds millions of
them) take exactly their fields, in order, with the same defaults, and set every one: a field
added later without its line in ``__init__`` would otherwise stay unset until first read."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from rasd.ladder.decision import Decision, _DecisionDraft
from rasd.ladder.replay_json import _EventDraft
from rasd.ladder.step import Closure, _ClosureDraft
from rasd.model import FaultEvent

WRITTEN = [FaultEvent, Decision, Closure]


@pytest.mark.parametrize("cls", WRITTEN, ids=lambda c: c.__name__)
def test_a_written_constructor_takes_and_sets_every_field(cls: type) -> None:
    fields = dataclasses.fields(cls)
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    assert [p.name for p in params] == [f.name for f in fields]
    for p, f in zip(params, fields):
        if f.default is not dataclasses.MISSING:
            assert p.default == f.default, f.name
        elif f.default_factory is not dataclasses.MISSING:
            assert p.default == f.default_factory(), f.name
        else:
            assert p.default is inspect.Parameter.empty, f.name
    # One distinct object per field: each must come back from its own attribute.
    values = {f.name: object() for f in fields}
    obj = cls(**values)
    assert {name: getattr(obj, name) for name in values} == values
    assert dataclasses.replace(obj) == obj
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(obj, fields[0].name, 1)


# the drafts: plain slotted classes that write the fields, then take the frozen class
DRAFTS = [(FaultEvent, _EventDraft), (Decision, _DecisionDraft), (Closure, _ClosureDraft)]


@pytest.mark.parametrize("cls,draft", DRAFTS, ids=lambda c: c.__name__)
def test_a_draft_builds_the_frozen_class_itself(cls: type, draft: type) -> None:
    """Each field comes back from its own attribute, and what is built is the frozen class,
    equal to and hashed as the one its own constructor builds, and frozen from then on."""
    fields = dataclasses.fields(cls)
    assert draft.__slots__ == tuple(f.name for f in fields)
    params = list(inspect.signature(draft.__init__).parameters.values())[1:]
    assert [p.name for p in params] == [f.name for f in fields]
    values = {f.name: str(i) for i, f in enumerate(fields)}
    obj = draft(*values.values())
    assert type(obj) is cls
    assert {name: getattr(obj, name) for name in values} == values
    assert obj == cls(**values) and hash(obj) == hash(cls(**values))
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(obj, fields[0].name, 1)
