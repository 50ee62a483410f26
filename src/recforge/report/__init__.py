"""The experiment report: leaderboard, plots, diversity trade-off and example lists.

`write_report` turns an `recforge.experiments.record.ExperimentRecord` into ``report.md``
(figures referenced as ``figures/*.png``) and a self-contained ``report.html``.
"""

from recforge.report.writer import write_report

__all__ = ["write_report"]
