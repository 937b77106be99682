"""sodium-gadgets: online sodium-23 MRI reconstruction to tissue sodium concentration maps.

Layout (each concept in one module named after it):

* the gadgets, the steps chain files name (``gadgets.MODULE``, stable paths):
  :mod:`.noise_prewhitening`, :mod:`.gridding`, :mod:`.coil_combination`,
  :mod:`.b0_correction`, :mod:`.tsc_calibration`, :mod:`.dicom_output`, :mod:`.preview`;
  what travels between them: :mod:`.volumes` (images with geometry and meta),
  :mod:`.volume_meta` (the gridder's contract), :mod:`.echo_volumes` (a base for steps that
  need every echo);
* :mod:`.core`: the numerical core and its outputs, no sockets (``numerics``, ``receive``,
  ``calibration``, ``output``);
* :mod:`.runtime`: the generic chain runtime (chain loader, runner, wire protocol, server,
  clients, Gadgetron external steps), which knows nothing of sodium;
* :mod:`.simulator`: the scanner side, simulated scans with known truth;
* :mod:`.app`: the ``sodium-gadgets`` command, the demo, this application's runtime settings;
* :mod:`.resources`: the installed chains, coil files and scan descriptions.

``tests/test_layers.py`` checks that imports point down these layers.
"""

__version__ = "0.1.0"
