"""rero: real-time slot booking for the ReRo lab."""

# The one place the version is written: setup.cfg reads it (version = attr: rero.__version__).
__version__ = "0.1.0"
