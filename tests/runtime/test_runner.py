import ismrmrd
import pytest

from gadgets.runtime.chain import parse_chain
from gadgets.runtime.client import read_raw
from gadgets.runtime.runner import ChainRunner, StepError
from gadgets.simulator.scan import ScanDescription, simulate


def _external(module, target, props=()):
    p = "".join(f'<property name="{k}" value="{v}"/>' for k, v in props)
    return (
        f'<external><execute name="{module}" target="{target}" type="python"/>'
        f"<configuration>{p}</configuration></external>"
    )


def _chain(*steps):
    return (
        "<configuration><version>2</version><stream>" + "".join(steps) + "</stream></configuration>"
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    simulate(ScanDescription.load("tiny"), out)
    return out / "tiny.h5"


@pytest.fixture(scope="module")
def header_xml(tiny):
    return read_raw(tiny)[0]


def test_runner_order_finish_and_errors(header_xml, tiny):
    xml = _chain(
        _external("chain_gadgets", "Scale", [("factor", "2")]),
        _external("chain_gadgets", "Counter"),
    )
    runner = ChainRunner(parse_chain(xml), header_xml)
    _, items = read_raw(tiny)
    n = sum(len(runner.push(item)) for item in items)
    assert n == 0 and runner.finish() == ["counted 616"]
    bad = ChainRunner(parse_chain(_chain(_external("chain_gadgets", "Explodes"))), header_xml)
    with pytest.raises(StepError) as info:
        bad.push(ismrmrd.Acquisition())
    assert info.value.client_text() == "[Explodes] ERROR: RuntimeError: kaboom"
