"""The numerical core: pure functions and small classes that know nothing of streams or sockets.

One concept per module: :mod:`.trajectory`, :mod:`.density`, :mod:`.kernel`, :mod:`.gridding`,
:mod:`.fft`, :mod:`.nudft` (exact reference), :mod:`.phantom` (analytic test objects),
:mod:`.cache` (on-disk cache).
"""
