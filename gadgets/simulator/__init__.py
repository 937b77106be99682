"""The scanner side: simulated sodium scans with known truth (see ``simulated_raw/README.md``).

:mod:`.head` (the digital phantom), :mod:`.tissues` (concentrations and relaxation),
:mod:`.receive_coils` (coil sensitivities and noise), :mod:`.field` (B0), :mod:`.signal` (the
k-space signal), :mod:`.scan` (description file -> ISMRMRD raw data + truth), :mod:`.evaluate`
(maps against the truth, the PSF-limited reference).
"""
