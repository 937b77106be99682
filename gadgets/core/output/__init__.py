"""What leaves the reconstruction.

* :mod:`.dicom_series`: MR Image Storage series (16-bit with an exact rescale and a real world
  value mapping) and Secondary Capture pictures;
* :mod:`.dicom_identity`: patient, study and frame of reference from the ISMRMRD header;
* :mod:`.dicom_encoder`: Part-10 bytes, fast for a series (byte-identical to pydicom);
* :mod:`.dicom_files`: writing series to disk, reading them back;
* :mod:`.dicom_pmap`: the optional float32 Parametric Map (highdicom);
* :mod:`.qa`: the calibration QA picture; :mod:`.qa_process`: drawing it in a helper process.
"""
