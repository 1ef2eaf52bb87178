"""The simulator: a fake NVML library on top of a modelled GPU node.

``nvml`` is the stand-in for the ``pynvml`` module (``FakeNvml``); ``node`` is the modelled node
(``FakeNode``: GPUs of one ``profiles`` entry running a ``workload``, their power in ``powersim``,
scripted faults from a ``scenario`` applied by ``effects``). ``fields`` and ``events`` are the
field-value and Xid-event halves of the fake library; ``clock`` is a hand-moved clock for tests.
"""

from rasd.backends.fake.node import FakeNode, FakeNvml

__all__ = ["FakeNode", "FakeNvml"]
