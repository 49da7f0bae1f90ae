"""Attack campaigns: every attack on every selected image, one committed SQLite row per job.

- :mod:`dermadv.campaign.store`: :class:`ResultsStore`, the resumable results table + PNGs of a RUN;
- :mod:`dermadv.campaign.runner`: :func:`plan_jobs`, :func:`group_jobs`, :func:`run_unit`,
  :class:`~dermadv.campaign.runner.AttackUnit` (run by any :mod:`dermadv.runs.executor` executor) and
  :func:`run_campaign` (resume, run.json, settings check);
- :mod:`dermadv.campaign.seeds`: :func:`job_seed`, the per-(image, attack) seed;
- :mod:`dermadv.campaign.summary`: success tables (Wilson CIs) and the before/after heat map.
"""

from dermadv.campaign.runner import (
    CampaignJob,
    CampaignOutcome,
    LocalExecutor,
    group_jobs,
    plan_jobs,
    read_run_info,
    run_campaign,
    run_unit,
)
from dermadv.campaign.seeds import job_seed
from dermadv.campaign.store import ResultsStore
from dermadv.campaign.summary import summarize_rows, summarize_run

__all__ = [
    "CampaignOutcome",
    "CampaignJob",
    "LocalExecutor",
    "ResultsStore",
    "group_jobs",
    "job_seed",
    "plan_jobs",
    "read_run_info",
    "run_campaign",
    "run_unit",
    "summarize_rows",
    "summarize_run",
]
