import io

import numpy as np
import pydicom
from conftest import dicom_geometry

from gadgets.core.output.dicom_encoder import encode_series
from gadgets.core.output.dicom_series import SeriesInfo, series_datasets


def test_series_encoding_is_byte_identical_to_pydicom(header_xml, rng):
    """The fast series encoder writes what pydicom writes, file by file, a non-ASCII patient
    name (UTF-8 character set) included; every slice has its own UID, number and position."""
    xml = header_xml.replace("Phantom^Sodium", "Müller^Zoë")
    volume = rng.uniform(0, 150, (6, 20, 24))
    datasets = series_datasets(volume, dicom_geometry(), xml, SeriesInfo("Na23 TSC [mmol/L]", 10))
    fast = encode_series(datasets)
    for ds, data in zip(datasets, fast, strict=True):
        buf = io.BytesIO()
        pydicom.dcmwrite(buf, ds, enforce_file_format=True)
        assert data == buf.getvalue()
    back = [pydicom.dcmread(io.BytesIO(d)) for d in fast]
    assert str(back[3].PatientName) == "Müller^Zoë"
    assert [int(d.InstanceNumber) for d in back] == list(range(1, 7))
    assert len({d.SOPInstanceUID for d in back}) == 6
    assert all(d.file_meta.MediaStorageSOPInstanceUID == d.SOPInstanceUID for d in back)
    z = [float(d.ImagePositionPatient[2]) for d in back]
    assert np.allclose(np.diff(z), 10.0) and np.allclose(z, [float(d.SliceLocation) for d in back])
    stored = np.stack([d.pixel_array * float(d.RescaleSlope) for d in back])
    assert np.abs(stored - volume).max() <= 0.05
