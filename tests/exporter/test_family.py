"""The daemon's own families and number spelling read exactly as prometheus_client's."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.utils import floatToGoString

from exporters.family import CounterFamily, GaugeFamily, TextRenderer, go_float

EDGES = [0.0, -0.0, 1.0, 999999.0, 1e6, 1234567.0, 1e10, 80e9, 2.0**53, 1e15, 9999999999999998.0, 1e16,
         1.5e16, -1234567.0, 1e-5, 5e-324, 1.7976931348623157e308, float("inf"), float("-inf"), float("nan")]


@given(st.one_of(st.floats(), st.integers(min_value=-(2**63), max_value=2**63), st.sampled_from(EDGES)))
def test_numbers_are_spelled_as_prometheus_client_spells_them(v: float) -> None:
    assert go_float(v) == floatToGoString(v)


class _Registry:
    def __init__(self, families: list) -> None:  # type: ignore[type-arg]
        self.families = families

    def collect(self):  # type: ignore[no-untyped-def]
        return iter(self.families)


@given(
    st.lists(st.tuples(st.text(min_size=0, max_size=8), st.floats()), max_size=6),
    st.text(max_size=30),
    st.booleans(),
)
def test_a_family_renders_and_collects_as_prometheus_clients_does(rows, doc, counter) -> None:  # type: ignore[no-untyped-def]
    ours = (CounterFamily if counter else GaugeFamily)("rasd_x_total" if counter else "rasd_x", doc, labels=["gpu"])
    theirs = (CounterMetricFamily if counter else GaugeMetricFamily)("rasd_x", doc, labels=["gpu"])
    seen = set()
    for label, value in rows:
        if label in seen:  # one series per label set, as a registry requires
            continue
        seen.add(label)
        ours.add_metric([label], value)
        theirs.add_metric([label], value)
    upstream = generate_latest(_Registry([theirs])).decode()  # type: ignore[arg-type]
    assert TextRenderer().family(ours)[1].decode() == upstream
    # and prometheus_client reads our family as its own (tests collect through registries)
    reg = CollectorRegistry()
    reg.register(_Registry([ours]))  # type: ignore[arg-type]
    assert generate_latest(reg).decode() == upstream
