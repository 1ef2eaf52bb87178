"""The frozen dataclasses whose ``__init__`` is written out by hand (replay builds millions of
them) take exactly their fields, in order, with the same defaults, and set every one: a field
added later without its line in ``__init__`` would otherwise stay unset until first read."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from rasd.ladder.decision import Decision
from rasd.ladder.step import Closure
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
