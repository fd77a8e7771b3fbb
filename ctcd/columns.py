"""Column names ctcd itself uses, so a dataset's own columns never clash with them.

The prediction log and the API answer name their columns `request_id`, `served_at`, `probability`,
`prediction` and `model_version`, the log adds the rollout columns (a request row may carry `as_of`): a
dataset column cannot use these names (`dataset` is validated at config load). Columns ctcd adds to frames
only internally start with `_ctcd_`, a prefix no dataset column may use.
"""

from __future__ import annotations

REQUEST_ID = "request_id"
SERVED_AT = "served_at"
PROBABILITY = "probability"
PREDICTION = "prediction"
MODEL_VERSION = "model_version"
AS_OF = "as_of"
# Rollout columns (`ctcd.rollout`): which model answered, and both models' versions and probabilities;
# None on rows served without a rollout.
ANSWERED_BY = "answered_by"  # "champion" | "candidate"
CHAMPION_VERSION = "champion_version"
CHAMPION_PROBABILITY = "champion_probability"
CANDIDATE_VERSION = "candidate_version"
CANDIDATE_PROBABILITY = "candidate_probability"
ROLLOUT_COLUMNS = (
    ANSWERED_BY,
    CHAMPION_VERSION,
    CHAMPION_PROBABILITY,
    CANDIDATE_VERSION,
    CANDIDATE_PROBABILITY,
)
LOG_COLUMNS = (REQUEST_ID, SERVED_AT, PROBABILITY, PREDICTION, MODEL_VERSION, *ROLLOUT_COLUMNS)
RESERVED = (*LOG_COLUMNS, AS_OF)
INTERNAL_PREFIX = "_ctcd_"

# Internal-only columns (never stored where a user reads them by name).
BATCH = f"{INTERNAL_PREFIX}batch_id"  # the batch a training row or a served prediction belongs to


def reserved_clash(column: str) -> bool:
    """Whether a dataset column name is one ctcd uses itself."""
    return column in RESERVED or column.startswith(INTERNAL_PREFIX)
