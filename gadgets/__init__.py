"""sodium-gadgets: online sodium-23 MRI reconstruction to tissue sodium concentration maps."""

__version__ = "0.1.0"
