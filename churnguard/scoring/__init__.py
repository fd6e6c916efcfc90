"""From scores to decisions: the end-to-end model, tiers, segments, playbook, list, report.

MLflow-dependent pieces (``churnguard.scoring.pyfunc``) and the batch scorer
(``churnguard.scoring.batch``) are imported from their modules, not here, to keep
``import churnguard.scoring`` fast.
"""

from churnguard.scoring.bundle import load_model, model_metadata, save_model
from churnguard.scoring.model import VALUE_COLUMNS, ChurnGuardModel, TrainingReport
from churnguard.scoring.playbook import Playbook, contact_summary, select_contacts
from churnguard.scoring.report import build_report
from churnguard.scoring.retention import CONTRACT_COLUMNS, build_retention_list, retention_summary
from churnguard.scoring.segments import assign_segments, load_segment_rules, rfm_scores
from churnguard.scoring.tiers import (
    assign_value_tiers,
    concentration,
    flag_growth_candidates,
    growth_candidates,
    pareto_curve,
    risk_band,
    value_score,
)

__all__ = [
    "CONTRACT_COLUMNS",
    "VALUE_COLUMNS",
    "ChurnGuardModel",
    "Playbook",
    "TrainingReport",
    "assign_segments",
    "assign_value_tiers",
    "build_report",
    "build_retention_list",
    "concentration",
    "contact_summary",
    "flag_growth_candidates",
    "growth_candidates",
    "load_model",
    "load_segment_rules",
    "model_metadata",
    "pareto_curve",
    "retention_summary",
    "rfm_scores",
    "save_model",
    "select_contacts",
    "value_score",
    "risk_band",
]
