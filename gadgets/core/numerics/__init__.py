"""The numerical core (imports nothing else of the package but :mod:`gadgets.core.cache`).

==============================  ====================================================================
:mod:`.trajectory`              DA-3DPR, 3D radial and TPI readouts; the header's trajectory
:mod:`.density`                 density compensation: analytic radial weights, Pipe-Menon
:mod:`.kernel`                  the Kaiser-Bessel gridding kernel and grid geometry
:mod:`.nufft`                   adjoint / forward NUFFT and the streaming grid accumulator
:mod:`.fft`                     pruned in-place FFTs (FFTW, wisdom in the cache)
:mod:`.nudft`                   the exact non-uniform DFT (reference for tests)
:mod:`.phantom`                 analytic sphere phantoms and their exact k-space
:mod:`.noise`                   noise covariance and prewhitening
:mod:`.image_noise`             image noise variance through gridding, combination and MFI
:mod:`.channel_combination`     root sum of squares, Walsh adaptive, Roemer
:mod:`.b0`                      field map from two echoes, multi-frequency interpolation
:mod:`.relaxation`              relaxation weighting, tube/tissue class correction, 23NaR
:mod:`.apodization`             the Kaiser window on ``|k|`` against Gibbs ringing
:mod:`.geometry`                where a volume's voxels are in the patient
==============================  ====================================================================
"""
