"""rero: real-time slot booking for the ReRo lab."""

__version__ = "0.1.0"
