"""Finding a fitted model: a model folder, an MLflow model URI, or a model object."""

from __future__ import annotations

import os
from pathlib import Path

from churnguard.model import ChurnGuardModel, load_model

__all__ = ["is_model_uri", "resolve_model"]


def is_model_uri(text: str) -> bool:
    """Whether ``text`` names an MLflow model (``models:/...``, ``runs:/...``) not a folder."""
    return text.startswith(("models:/", "runs:/")) or (":/" in text and not Path(text).exists())


def resolve_model(model: str | os.PathLike[str] | ChurnGuardModel) -> ChurnGuardModel:
    """A fitted model from a model directory, an MLflow URI, or a model object.

    MLflow is imported only for a URI (it is slow to import and a folder does not
    need it).
    """
    if isinstance(model, ChurnGuardModel):
        return model
    text = str(model)
    if is_model_uri(text):
        from churnguard.tracking.pyfunc import load_churnguard_model

        return load_churnguard_model(text)
    return load_model(text)
