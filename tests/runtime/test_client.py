import ismrmrd
import numpy as np
import pytest

from gadgets.runtime.client import read_raw


def test_fast_reader_equals_ismrmrd(tiny):
    xml, items = read_raw(tiny)
    ds = ismrmrd.Dataset(str(tiny), "dataset", create_if_needed=False)
    try:
        theirs_xml = ds.read_xml_header()
        theirs = [ds.read_acquisition(i) for i in range(ds.number_of_acquisitions())]
    finally:
        ds.close()
    assert xml == (theirs_xml.decode() if isinstance(theirs_xml, bytes) else theirs_xml)
    ours = list(items)
    assert len(ours) == len(theirs) == 616
    for a, b in zip(ours, theirs, strict=True):
        assert a.getHead() == b.getHead()
        np.testing.assert_array_equal(a.data, b.data)
        np.testing.assert_array_equal(a.traj, b.traj)
    with pytest.raises(FileNotFoundError):
        read_raw(tiny.parent / "missing.h5")
