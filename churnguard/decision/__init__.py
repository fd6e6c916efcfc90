"""From scores to decisions: value tiers, RFM segments, the playbook, the retention list.

One implementation of the decision steps (:func:`decide`) serves every executor.
"""

from churnguard.decision.growth import flag_growth_candidates, growth_candidates
from churnguard.decision.playbook import Playbook, contact_summary, select_contacts
from churnguard.decision.retention import (
    CONTRACT_COLUMNS,
    SUPPORTING_COLUMNS,
    build_retention_list,
    decide,
    retention_list,
    retention_summary,
)
from churnguard.decision.segments import (
    SegmentRules,
    assign_segments,
    load_segment_rules,
    rfm_scores,
)
from churnguard.decision.tiers import (
    assign_value_tiers,
    concentration,
    pareto_curve,
    risk_band,
    value_score,
)

__all__ = [
    "CONTRACT_COLUMNS",
    "SUPPORTING_COLUMNS",
    "Playbook",
    "SegmentRules",
    "assign_segments",
    "assign_value_tiers",
    "build_retention_list",
    "concentration",
    "contact_summary",
    "decide",
    "flag_growth_candidates",
    "growth_candidates",
    "load_segment_rules",
    "pareto_curve",
    "retention_list",
    "retention_summary",
    "rfm_scores",
    "risk_band",
    "select_contacts",
    "value_score",
]
