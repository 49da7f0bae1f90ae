"""Per-job random seeds that depend only on what the job is, never on when or where it runs."""

from __future__ import annotations

import hashlib


def job_seed(campaign_seed: int, image_id: str, attack: str) -> int:
    """Stable 32-bit seed for one (image, attack) job of a campaign.

    A hash of (campaign seed, image id, attack name): the order jobs run in, how they are batched
    and which worker runs them never change a job's random stream, so resumed and distributed
    campaigns give the same numbers as one uninterrupted run.
    """
    key = f"{int(campaign_seed)}\x1f{image_id}\x1f{attack}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "little")
