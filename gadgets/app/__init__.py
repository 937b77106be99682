"""The application: the ``sodium-gadgets`` command and what sits behind it.

:mod:`.cli` (the command), :mod:`.application` (this application's settings for the runtime:
chains, names, file hooks), :mod:`.demo` (end to end against the truth), :mod:`.scan_cache`
(simulated scans reused), :mod:`.server_process` (``serve`` in a child process, for the demo and
the latency benchmark), :mod:`.dicom_readback` (the returned series as a viewer sees them).
"""
