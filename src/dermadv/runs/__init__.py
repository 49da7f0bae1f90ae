"""Runs: what every dermadv run (train, evaluate, sweep, attack...) records, and where its work runs.

- :mod:`dermadv.runs.provenance`: versions, file and data-selection hashes, a run's provenance;
- :mod:`dermadv.runs.record`: :class:`~dermadv.runs.record.RunDir`, the ``run.json`` of a run folder;
- :mod:`dermadv.runs.lock`: one writer per run folder (``RUN/.lock``, held for the whole run);
- :mod:`dermadv.runs.specs`: frozen, picklable descriptions of work (model, attack, perturbation);
- :mod:`dermadv.runs.executor`: one local and one Ray executor for every kind of work unit.
"""
