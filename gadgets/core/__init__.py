"""The core: pure functions and small classes that know nothing of streams or sockets.

* :mod:`.numerics`: trajectories, density compensation, NUFFT, noise, coil combination, B0,
  relaxation, apodization, volume geometry;
* :mod:`.receive`: removing a receive coil's profile (loop-array model, measured profile, coil
  files);
* :mod:`.calibration`: reference tubes found, measured and fitted
  (:func:`.calibration.calibrate.calibrate`);
* :mod:`.output`: what leaves the reconstruction: DICOM series and their encoding, the QA picture;
* :mod:`.cache`: the on-disk cache of results that depend only on the protocol.
"""
