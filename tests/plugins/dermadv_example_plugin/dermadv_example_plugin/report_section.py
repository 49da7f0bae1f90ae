"""Report section ``melanoma-scores``: how the melanoma score is spread in each evaluation run.

For every evaluation run (``predictions.csv``): images, and the median and interquartile range of
the melanoma score p_mel/(p_mel+p_ben) among melanomas and among naevi. Absent (None) when the
report has no evaluation run.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dermadv.report.html import REPORT_SECTIONS, ReportContext, esc
from dermadv.report.runs import Run, read_predictions


def _spread(scores: np.ndarray) -> str:
    if len(scores) == 0:
        return "–"
    q1, med, q3 = np.percentile(scores, [25, 50, 75])
    return f"{med:.3f} ({q1:.3f}–{q3:.3f})"


@REPORT_SECTIONS.register("melanoma-scores", title="Melanoma score distribution", order=35)
def melanoma_scores_section(runs: Sequence[Run], context: ReportContext) -> str | None:
    rows = []
    for run in context.evaluations:
        pred = read_predictions(run)
        if pred is None:
            continue
        y, s = np.asarray(pred[0], bool), np.asarray(pred[1], float)
        rows.append(
            f'<tr><td class="l">{esc(run.label)}</td><td>{len(s)}</td><td>{_spread(s[y])}</td>'
            f"<td>{_spread(s[~y])}</td></tr>"
        )
    if not rows:
        return None
    return (
        '<table><thead><tr><th class="l">model</th><th>images</th><th>melanomas: median (IQR)</th>'
        f"<th>naevi: median (IQR)</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        '<p class="note">Melanoma score p_mel/(p_mel+p_ben) from predictions.csv '
        "(section added by dermadv-example-plugin).</p>"
    )
