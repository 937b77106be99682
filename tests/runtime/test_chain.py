import ismrmrd
import pytest
from conftest import chain_xml, external_step

from gadgets.resources import chains_dir
from gadgets.runtime.chain import ChainError, instantiate, load_chain, parse_chain, resolve_chain
from gadgets.runtime.runner import ChainRunner


def test_both_chain_forms_read_the_same(header_xml):
    v2 = parse_chain(chain_xml(external_step("chain_gadgets", "Scale", [("factor", "2")])))
    legacy = parse_chain(
        chain_xml(
            "<gadget><name>Scale</name><dll>gadgetron_python</dll><classname>PythonGadget</classname>"
            "<property><name>python_module</name><value>chain_gadgets</value></property>"
            "<property><name>python_class</name><value>Scale</value></property>"
            "<property><name>factor</name><value>2</value></property></gadget>"
        )
    )
    assert v2.steps == legacy.steps
    step = instantiate(v2, ismrmrd.xsd.CreateFromDocument(header_xml))[0][1]
    assert step.factor == 2.0 and step.label == "x"


def test_property_errors_name_chain_step_and_property(header_xml):
    def load(xml, **overrides):
        return ChainRunner(parse_chain(xml, "mychain"), header_xml, overrides)

    with pytest.raises(ChainError, match=r"mychain: step 'Scale': unknown property 'gain'"):
        load(chain_xml(external_step("chain_gadgets", "Scale", [("gain", "2")])))
    with pytest.raises(
        ChainError, match=r"mychain: step 'Scale': property 'factor': expected a number"
    ):
        load(chain_xml(external_step("chain_gadgets", "Scale", [("factor", "big")])))
    with pytest.raises(
        ChainError, match=r"step 'Needs': required property 'tube_concentrations_mM'"
    ):
        load(chain_xml(external_step("chain_gadgets", "Needs")))
    with pytest.raises(ChainError, match=r"step 'Counter': property 'strict': expected a boolean"):
        load(chain_xml(external_step("chain_gadgets", "Counter", [("strict", "maybe")])))
    with pytest.raises(ChainError, match="C\\+\\+ gadget .*only a Gadgetron server"):
        load(
            chain_xml(
                "<gadget><name>Dicom</name><dll>gadgetron_dicom</dll>"
                "<classname>DicomFinishGadget</classname></gadget>"
            )
        )
    with pytest.raises(ChainError, match="cannot import module"):
        load(chain_xml(external_step("no.such.module", "X")))
    with pytest.raises(ChainError, match="not valid XML"):
        parse_chain("<configuration><stream>", "broken")
    needs = load(
        chain_xml(external_step("chain_gadgets", "Needs")), tube_concentrations_mM="30,60,90"
    )
    assert needs.steps[0][1].tube_concentrations_mM == (30.0, 60.0, 90.0)


def test_overrides_apply_to_every_step_that_declares_them(header_xml):
    xml = chain_xml(
        external_step("chain_gadgets", "Scale", [("factor", "2")]),
        external_step("chain_gadgets", "Scale", [("factor", "3")]),
        external_step("chain_gadgets", "Counter"),
    )
    runner = ChainRunner(parse_chain(xml), header_xml, {"factor": "5", "every": "2"})
    assert [s.factor for _, s in runner.steps[:2]] == [5.0, 5.0] and runner.steps[2][1].every == 2
    with pytest.raises(ChainError, match="no step has a property 'fwhm_mm'"):
        ChainRunner(parse_chain(xml), header_xml, {"fwhm_mm": "4"})


def test_chain_names_resolve(tmp_path):
    chains = chains_dir()
    assert resolve_chain("sodium_preview", chains) == resolve_chain("sodium_preview.xml", chains)
    with pytest.raises(ChainError, match="unknown chain 'nope'.*sodium_preview"):
        load_chain("nope", chains)
