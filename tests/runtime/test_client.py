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


def test_background_writer_writes_in_order_and_raises_what_a_write_met(tmp_path):
    """The client's files are written by a thread of their own (its socket is read on
    meanwhile): every file arrives, in order; a write that fails (a name already taken: never
    replaced) is raised at close, and nothing after it is written."""
    from gadgets.runtime.outputs import BackgroundWriter, OutputFolder
    from gadgets.runtime.protocol import DicomFile

    files = [DicomFile(bytes([i]) * (100 + i), f"series010_{i:04d}.dcm") for i in range(1, 41)]
    writer = BackgroundWriter(OutputFolder(tmp_path / "a"))
    for f in files:
        writer.add(f)
    writer.close()
    assert [p.name for p in writer.folder.dicoms] == [f.filename for f in files]
    assert all((tmp_path / "a" / f.filename).read_bytes() == f.data for f in files)

    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "series010_0002.dcm").write_bytes(b"earlier")
    writer = BackgroundWriter(OutputFolder(tmp_path / "b"))
    for f in files[:4]:
        writer.add(f)
    with pytest.raises(FileExistsError, match="series010_0002.dcm exists"):
        writer.close()
    assert (tmp_path / "b" / "series010_0002.dcm").read_bytes() == b"earlier"
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [
        "series010_0001.dcm",
        "series010_0002.dcm",
    ]
