"""Experiments between model versions: traffic splits, shadow runs, feedback and reports.

- ``definitions``: ``Experiment``, ``Variant``, ``Shadow`` and ``ExperimentStore``
  (``<store>/experiments.json``);
- ``assignment``: which variant serves a caller (hash of the experiment and the key or user);
- ``log``: the per-experiment SQLite log, written off the request path;
- ``shadow``: the shadow candidate's runner and its agreement measures;
- ``stats`` and ``report``: intervals, the significance test and the suggested decision;
- ``manage``: pinning model references, loading variants, promoting through the quality gate;
- ``metrics``: the experiment and shadow Prometheus metrics.
"""

from embedops.experiments.definitions import Experiment, ExperimentStore, Shadow, Variant
from embedops.experiments.report import experiment_report

__all__ = ["Experiment", "ExperimentStore", "Shadow", "Variant", "experiment_report"]
