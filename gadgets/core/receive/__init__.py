"""Removing a receive coil's profile from the combined image.

* :mod:`.loop_model`: a loop array's sensitivities from its geometry (Biot-Savart), fitted to the
  scan's channels;
* :mod:`.receive_profile`: a coil's profile measured once on a uniform bottle;
* :mod:`.coil_file`: finding and reading coil files (``chains/coils/*.json``).
"""
