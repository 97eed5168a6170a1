"""The package's version, in a leaf: the recording cache's keys and a run's manifest carry it, and
the package's ``__init__`` (which imports the quick-start names) is no place for them to reach."""

__version__ = "0.1.0"
