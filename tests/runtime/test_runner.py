import ismrmrd
import pytest
from conftest import chain_xml, external_step

from gadgets.runtime.chain import parse_chain
from gadgets.runtime.client import read_raw
from gadgets.runtime.runner import ChainRunner, StepError


def test_runner_order_finish_and_errors(header_xml, tiny):
    xml = chain_xml(
        external_step("chain_gadgets", "Scale", [("factor", "2")]),
        external_step("chain_gadgets", "Counter"),
    )
    runner = ChainRunner(parse_chain(xml), header_xml)
    _, items = read_raw(tiny)
    n = sum(len(runner.push(item)) for item in items)
    assert n == 0 and runner.finish() == ["counted 616"]
    bad = ChainRunner(
        parse_chain(chain_xml(external_step("chain_gadgets", "Explodes"))), header_xml
    )
    with pytest.raises(StepError) as info:
        bad.push(ismrmrd.Acquisition())
    assert info.value.client_text() == "[Explodes] ERROR: RuntimeError: kaboom"
