"""[ladder] and [actions] settings: what validate() refuses."""

from __future__ import annotations

from rasd.ladder.settings import ActionSettings, LadderSettings


def test_settings_validation():
    assert ActionSettings(commands={"reset_gpu": ("x", "{nope}")}).validate()
    assert ActionSettings(commands={"format_disk": ("x",)}).validate()
    assert not ActionSettings(commands={"reset_gpu": ("nvidia-smi", "-i", "{gpu_index}")}
                              ).validate()
    assert LadderSettings(resets_not_holding=0).validate()
    assert not LadderSettings().validate()
