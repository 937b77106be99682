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

import os
import sys

__version__ = "0.1.0"

#: the packages whose gadgets a chain may run (importing a module runs its code)
GADGET_PACKAGES = ("gadgets",)


def _bound_threads_under_gadgetron() -> None:
    """Under a real Gadgetron every ``<external>`` step is a process of its own (``python -m
    gadgetron PORT MODULE TARGET``), started before this package is imported: numba's thread
    pool is bounded per step here, before numba is imported (2 threads, or
    ``$SODIUM_GADGETS_STEP_THREADS``; all cores for ``ProtocolChain``, which runs a whole chain in
    one process), so that six steps do not start six pools of every core."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is None or spec.name != "gadgetron.__main__" or "NUMBA_NUM_THREADS" in os.environ:
        return
    cores = os.cpu_count() or 1
    whole_chain = len(sys.argv) > 3 and sys.argv[3] == "ProtocolChain"
    default = cores if whole_chain else min(2, cores)
    os.environ["NUMBA_NUM_THREADS"] = os.environ.get("SODIUM_GADGETS_STEP_THREADS", str(default))


_bound_threads_under_gadgetron()
