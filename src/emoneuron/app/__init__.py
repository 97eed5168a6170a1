"""The application layer: what the commands that run the pipeline call. :mod:`.run` runs every
stage into one run directory, :mod:`.ablate` adds neurons to a finished run's method
comparison, :mod:`.series` runs several models and compares them, and :mod:`.reuse` decides
what a run directory may reuse. Each stage below it takes its own settings, never the whole
:class:`~emoneuron.config.RunConfig`."""
