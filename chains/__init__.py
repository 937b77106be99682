"""The chain files, the protocol map and the coil files of sodium-gadgets.

This folder is their source in the repository; it is installed with the package as
``gadgets.chains`` and read through :mod:`gadgets.resources`, so a wheel finds it too."""
