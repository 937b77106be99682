"""The description files of the simulated scans (see README.md here).

This folder is their source in the repository; it is installed with the package as
``gadgets.simulated_raw`` and read through :mod:`gadgets.resources`, so a wheel finds it too."""
