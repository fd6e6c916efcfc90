"""The scoring half of :class:`~churnguard.model.ChurnGuardModel`: features to a scored frame.

Kept apart from the training half (:mod:`churnguard.model.estimator`) so that each
reads as one idea: given the fitted stages, turn a log (or a features frame) into churn
probabilities, value columns, value at risk and reasons. :class:`ScoringMethods` is a
mixin; it holds no parameters or state of its own.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.utils.validation import check_is_fitted

from churnguard._dates import DAYS_PER_UNIT, to_date
from churnguard._money import KEPT_SHARE, fit_kept_prior, kept_share
from churnguard.churn.candidates import PRIOR_COLUMN, PriorChurnModel
from churnguard.churn.classifier import logit
from churnguard.churn.hazard_shift import HazardShift
from churnguard.churn.level_blend import LevelBlend, blend_level
from churnguard.churn.reasons import explain
from churnguard.exceptions import InputDataError
from churnguard.features.compute import columns_of
from churnguard.features.engine import last_date
from churnguard.model._blocks import in_blocks
from churnguard.model.btyd import VALUE_COLUMNS, BTYDStage, p_alive_feature, reported_p_alive
from churnguard.model.value_choice import add_active_spend, value_ratio, window_value

__all__ = ["DEFAULT_REASONS_LIMIT", "ScoringMethods"]

#: Customers (highest value at risk first) whose reasons are computed (TreeSHAP is costly).
DEFAULT_REASONS_LIMIT = 25_000


class ScoringMethods:
    """Scoring methods of the fitted model (see :class:`ChurnGuardModel`)."""

    # Set by ChurnGuardModel.__init__ and fit; declared for the type checker.
    time_unit: str
    horizon_days: int
    clv_months: int
    discount_rate: float
    builder_: Any
    purchase_model_: Any
    spend_model_: Any
    churn_model_: Any
    level_: Any
    training_end_: Any
    feature_names_: list[str]
    value_model_choice_: str
    window_spend_model_: Any
    reason_reference_: Any

    @property
    def btyd_(self) -> BTYDStage:
        """The buy-till-you-die stage with this model's settings."""
        return BTYDStage(
            self.time_unit, int(self.horizon_days), int(self.clv_months), float(self.discount_rate)
        )

    def features_frame(
        self, feats: pd.DataFrame, pm: Any = None, sm: Any = None, *, copy: bool = True
    ) -> pd.DataFrame:
        """A feature table with the value columns of the purchase and spend models added.

        ``copy=False`` adds them to ``feats`` itself (no copy of a large table).
        """
        # The model's own fits read returns with the training base's prior; a snapshot's
        # fits (``pm`` given) with the prior of that snapshot's base, never a later one.
        prior = getattr(self, "kept_prior_", None) if pm is None else fit_kept_prior(feats)
        pm = self.purchase_model_ if pm is None else pm
        sm = self.spend_model_ if sm is None else sm
        share = kept_share(feats, prior)
        value = self.btyd_.value(feats, pm, sm, share)
        frame = feats.copy() if copy else feats
        for col in VALUE_COLUMNS:
            frame[col] = value[col].to_numpy()
        del value
        if share is not None:
            frame[KEPT_SHARE] = share
        add_active_spend(frame, self.btyd_.horizon_units, pm)
        return frame

    def features(self, transactions: pd.DataFrame, as_of: Any = None) -> pd.DataFrame:
        """Features and value-model outputs of every customer as of ``as_of``.

        ``transactions`` are canonical transactions as a DataFrame or a pyarrow Table
        (what :func:`churnguard.data.scan_transactions` returns: a large log need not
        pass through pandas).
        """
        check_is_fitted(self, "churn_model_")
        as_of_date = to_date(as_of) if as_of is not None else last_date(transactions)
        if "margin" in self.builder_.optional_columns_ and "margin" not in columns_of(transactions):
            # Other optional columns only feed features (read as unknown when missing);
            # margin is the historical value behind tiers, win-back and the no-value rule.
            raise InputDataError(
                "this model measures customers' historical value by margin (it was trained "
                "with a margin column), but the log has none: every customer would read as "
                "zero margin, so the value tiers, win-back and the no-value rule would be "
                "wrong. Pass --margin-col with the log's margin column, or score with a model "
                "trained without --margin-col."
            )
        feats = self.builder_.transform(transactions, as_of_date)
        if feats.empty:
            raise InputDataError(
                f"no customer has a purchase on or before {as_of_date}; choose a later --as-of."
            )
        return self.features_frame(feats, copy=False)

    def churn_probability(
        self, frame: pd.DataFrame, *, num_threads: int | None = None, as_of: Any = None
    ) -> np.ndarray:
        """Churn probability of each row of a :meth:`features` frame, shape ``(n,)``.

        With a drift correction (``hazard_shift_``, see
        :mod:`churnguard.churn.hazard_shift`) the churn model's log-odds are moved by each
        customer's share of the hazard change as it stands at ``as_of``, the frame's date
        (default: the end of the training log; a date before the change gets no
        correction). A learned churn model's log-odds are then scaled and moved by its
        level blend (``level_blend_``, see :mod:`churnguard.churn.level_blend`), two
        constants fixed at training.

        ``num_threads``: LightGBM threads (default all cores); the probabilities do not
        depend on it.
        """
        check_is_fitted(self, "churn_model_")
        names, churn = self.feature_names_, self.churn_model_
        p = in_blocks(
            lambda rows: churn.churn_probability(rows[names], num_threads=num_threads), frame
        )
        scale, offset = self._blend_terms()
        move = self.drift_move(frame, as_of)
        if move is None and offset == 0.0 and scale == 1.0:
            return p
        z = logit(p) + (0.0 if move is None else move)
        return np.asarray(expit(scale * z + offset), dtype=float)

    def _blend_terms(self) -> tuple[float, float]:
        """The level blend's factor and offset on the learned log-odds ((1, 0): none)."""
        blend = getattr(self, "level_blend_", None)  # absent from models saved before it
        if blend is None:
            return 1.0, 0.0
        # ``scale`` is absent from blends saved before it: the class default (1) applies.
        return float(getattr(blend, "scale", 1.0)), float(blend.offset)

    def measure_level_blend(
        self, frame: pd.DataFrame, calibration_rows: pd.DataFrame | None = None
    ) -> LevelBlend:
        """The learned model's level and spread half-way to the prior's at the log's end.

        ``frame`` is the training base at its end (:meth:`features_frame`); ``fit`` calls
        this once the learned churn model is fitted, before ``level_blend_`` is set. Both
        sides are as they score at the end of the log: the learned model with the drift
        correction, the prior with its level correction as well (see
        :mod:`churnguard.churn.level_blend` for why the two are averaged).

        ``calibration_rows``: the labelled snapshot rows the learned model was calibrated
        on, where the two models' spreads are measured against those at the end; without
        them, those of the blend already fitted are used (none: the spread is kept).
        """
        names = self.feature_names_
        learned = in_blocks(lambda rows: self.churn_model_.churn_probability(rows[names]), frame)
        prior_model = PriorChurnModel(PRIOR_COLUMN, level=self.level_.offset)
        prior = prior_model.fit(frame[[PRIOR_COLUMN]]).churn_probability(frame[[PRIOR_COLUMN]])
        move = self.drift_move(frame, self.training_end_)
        if move is not None:
            learned, prior = expit(logit(learned) + move), expit(logit(prior) + move)
        spread = getattr(getattr(self, "level_blend_", None), "calibration_spread", None)
        if calibration_rows is not None and len(calibration_rows):
            spread = (
                float(np.std(self.churn_model_.churn_probability(calibration_rows[names]))),
                float(np.std(prior_model.churn_probability(calibration_rows[[PRIOR_COLUMN]]))),
            )
        return blend_level(
            learned, prior, where=f"the base at {self.training_end_}", calibration_spread=spread
        )

    def drift_move(self, frame: pd.DataFrame, as_of: Any = None) -> np.ndarray | None:
        """Each row's churn log-odds move for the drift correction at ``as_of`` (None: none).

        See :meth:`churn_probability`; None when no drift was corrected or ``as_of`` is
        before the change.
        """
        drift = self._drift_inputs(frame, as_of)
        if drift is None:
            return None
        shift, rfm, since = drift
        return np.asarray(shift.log_odds_shift(*rfm, since), dtype=float)

    def _drift_inputs(
        self, frame: pd.DataFrame, as_of: Any
    ) -> tuple[HazardShift, tuple[np.ndarray, np.ndarray, np.ndarray], float] | None:
        """The hazard shift, ``(x, tx, T)`` in its time unit and its age at ``as_of``."""
        # models saved before the drift correction have no hazard_shift_
        shift = getattr(self, "hazard_shift_", None)
        since = None if shift is None else shift.since_at(as_of)
        if shift is None or since is None:
            return None
        unit = DAYS_PER_UNIT[shift.time_unit]
        rfm = (
            frame["frequency"].to_numpy(dtype=float),
            frame["recency"].to_numpy(dtype=float) / unit,
            frame["T"].to_numpy(dtype=float) / unit,
        )
        return shift, rfm, since

    def window_value(
        self, frame: pd.DataFrame, churn_probability: np.ndarray | None = None, as_of: Any = None
    ) -> np.ndarray:
        """Expected spend over the churn horizon of each row of a :meth:`features` frame.

        With the ``hurdle`` value model it is ``(1 - churn_probability)`` times the
        learned spend of an active window, at its seasonal level when one was validated
        (:mod:`churnguard.model.value_level`); ``churn_probability`` defaults to the
        model's own as of ``as_of`` (see :meth:`churn_probability`). With a drift
        correction, the expected purchases and an active customer's spend follow the
        changed hazard as well (:meth:`drift_window_factors`).
        """
        check_is_fitted(self, "churn_model_")
        p = (
            self.churn_probability(frame, as_of=as_of)
            if churn_probability is None
            else churn_probability
        )
        # models saved before the spend level correction have no value_level_
        level = getattr(getattr(self, "value_level_", None), "offset", 0.0)
        return window_value(
            self.value_model_choice_,
            frame,
            p,
            self.window_spend_model_,
            level,
            drift=self.drift_window_factors(frame, as_of),
        )

    def drift_window_factors(
        self, frame: pd.DataFrame, as_of: Any = None
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The drift correction's factors on next-window purchases at ``as_of`` (None: none).

        ``(purchases, if_active)`` of
        :meth:`churnguard.churn.hazard_shift.HazardShift.window_factors`: a higher hazard
        ends lives inside the window, so a customer is expected to buy fewer times in it,
        and fewer times even when buying at least once. On the shifted-churn world (hazard
        tripled four weeks before the scoring date), an active customer's spend over 182
        days was otherwise 18% too high (``benchmarks/README.md``).
        """
        drift = self._drift_inputs(frame, as_of)
        if drift is None:
            return None
        shift, rfm, since = drift
        return shift.window_factors(*rfm, since)

    def value_columns(
        self, frame: pd.DataFrame, *, num_threads: int | None = None, as_of: Any = None
    ) -> dict[str, np.ndarray]:
        """``predicted_clv`` and ``value_if_retained`` with the chosen value model's correction.

        BTYD x Gamma-Gamma values times the learned spend of an active window over the
        structural one (1 when BTYD x Gamma-Gamma was kept). With a drift correction at
        ``as_of`` (see :meth:`churn_probability`), ``predicted_clv`` also follows the
        changed hazard (:meth:`churnguard.churn.hazard_shift.HazardShift.clv_factor`);
        ``value_if_retained`` assumes the customer stays, whatever the hazard.
        ``num_threads``: LightGBM threads of the spend model (default all cores).
        """
        check_is_fitted(self, "churn_model_")
        choice, spend = self.value_model_choice_, self.window_spend_model_
        r = in_blocks(lambda rows: value_ratio(choice, rows, spend, num_threads=num_threads), frame)
        columns = {
            col: np.nan_to_num(frame[col].to_numpy(dtype=float)) * r
            for col in ("predicted_clv", "value_if_retained")
        }
        drift = self._drift_inputs(frame, as_of)
        if drift is not None:  # staying active says nothing of the hazard: only the CLV moves
            shift, rfm, since = drift
            months, rate = int(self.clv_months), float(self.discount_rate)
            columns["predicted_clv"] *= shift.clv_factor(*rfm, months, rate, since)
        return columns

    def predict(
        self,
        transactions: pd.DataFrame,
        as_of: Any = None,
        *,
        reasons_limit: int | None = DEFAULT_REASONS_LIMIT,
        currency: str = "",
    ) -> pd.DataFrame:
        """Churn probability, value and reasons per customer (not yet prioritised).

        A DataFrame of customers, not an array of labels: what a transaction log
        predicts is a table of customers (scikit-learn's ``set_output`` convention of
        DataFrame out). There is no ``score`` method: in scikit-learn that name means
        a metric, and churnguard's metrics are in :mod:`churnguard.evaluation`.

        Parameters
        ----------
        transactions : DataFrame
            Canonical transactions; only those on or before ``as_of`` are used.
        as_of : date-like, optional
            Scoring date; defaults to the last transaction date.
        reasons_limit : int, optional
            Reasons come from the churn model's exact per-customer contributions
            (TreeSHAP), which cost far more than the scores themselves (about 6,000
            customers a second on 2 cores). They are computed for the
            ``reasons_limit`` customers with the highest value at risk (everyone when
            ``None``); the others get a note saying so. 0 skips them.
        currency : str
            Prefix of money amounts in the reasons (e.g. ``"$"``).

        Returns
        -------
        DataFrame
            Features, the value columns, ``churn_probability``, ``value_at_risk`` and
            ``reasons``. ``p_alive`` is empty where the purchase model cannot tell
            (:func:`churnguard.model.btyd.reported_p_alive`); the churn model has used
            the purchase model's value.
        """
        check_is_fitted(self, "churn_model_")
        day = to_date(as_of) if as_of is not None else last_date(transactions)
        return self.predict_features(
            self.features(transactions, day),
            reasons_limit=reasons_limit,
            currency=currency,
            copy=False,
            as_of=day,
        )

    def predict_features(
        self,
        frame: pd.DataFrame,
        *,
        reasons_limit: int | None = DEFAULT_REASONS_LIMIT,
        currency: str = "",
        copy: bool = True,
        num_threads: int | None = None,
        as_of: Any = None,
    ) -> pd.DataFrame:
        """:meth:`predict` of a :meth:`features` frame.

        The scoring half of :meth:`predict`, for a caller that built the features
        itself and no longer holds the transactions (a large log's rows can be freed
        before the models run).

        Parameters
        ----------
        frame : DataFrame
            A frame returned by :meth:`features`.
        reasons_limit, currency
            As in :meth:`predict`.
        copy : bool
            Work on a copy (default). ``False`` adds the columns to ``frame`` itself
            and returns it: at a million customers a copy costs ~300 MB.
        num_threads : int, optional
            LightGBM threads of every model (default all cores). Pass fewer when other
            work runs alongside, e.g. partitions scored on several threads: OpenMP
            threads spin while they wait, so oversubscribed cores slow everything down.
            The scores and reasons do not depend on it.
        as_of : date-like, optional
            The frame's date, for the drift correction (see :meth:`churn_probability`).
        """
        check_is_fitted(self, "churn_model_")
        if copy:
            frame = frame.copy()
        frame["churn_probability"] = self.churn_probability(
            frame, num_threads=num_threads, as_of=as_of
        )
        for col, values in self.value_columns(frame, num_threads=num_threads, as_of=as_of).items():
            frame[col] = values
        frame["value_at_risk"] = frame["churn_probability"] * frame["value_if_retained"]
        frame["reasons"] = "not explained: outside the top reasons_limit customers by value at risk"
        n = len(frame) if reasons_limit is None else min(int(reasons_limit), len(frame))
        if n > 0:
            top = frame["value_at_risk"].nlargest(n).index if n < len(frame) else frame.index
            explained = self.reasons(
                frame.loc[top], num_threads=num_threads, currency=currency, as_of=as_of
            )
            frame.loc[top, "reasons"] = explained.to_numpy()
        frame["p_alive"] = reported_p_alive(self.purchase_model_, frame)
        return frame

    def reasons(
        self,
        frame: pd.DataFrame,
        *,
        num_threads: int | None = None,
        currency: str = "",
        as_of: Any = None,
    ) -> pd.Series:
        """Readable reasons for the churn score of each row of a scored frame.

        Parameters
        ----------
        frame : DataFrame
            Rows of :meth:`predict` (features, value columns, churn probability).
        num_threads : int, optional
            LightGBM threads for the contributions (1 when other work runs alongside).
        currency : str
            Prefix of money amounts.
        as_of : date-like, optional
            The frame's date. With a drift correction there (see :meth:`churn_probability`)
            the reasons quote it first, with what it adds to this customer's churn
            probability: the features' drivers explain the score before it, so a customer
            told "90% chance of a purchase by purchase pattern" sees why the churn
            probability is 29% and not 10%.
        """
        check_is_fitted(self, "churn_model_")
        p_alive = p_alive_feature(self.purchase_model_, frame)
        if p_alive is not None:  # a scored frame read back: explain the inputs it was scored on
            frame = frame.assign(p_alive=p_alive)
        contrib = self.churn_model_.contributions(
            frame[self.feature_names_], num_threads=num_threads
        )
        return explain(
            contrib,
            frame,
            self.reason_reference_,
            currency=currency,
            horizon_days=int(self.horizon_days),
            shared=self._drift_reason(frame, as_of),
        )

    def _drift_reason(
        self, frame: pd.DataFrame, as_of: Any
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The drift correction as a driver of each row's score (None: no correction)."""
        drift = self._drift_inputs(frame, as_of)
        if drift is None or "churn_probability" not in frame:
            return None
        shift, rfm, since = drift
        p = frame["churn_probability"].to_numpy(dtype=float)
        scale = self._blend_terms()[0]  # the blend scales the move with the log-odds
        before = expit(logit(p) - scale * shift.log_odds_shift(*rfm, since))
        points = np.rint(100.0 * (p - before)).astype(int)
        pace = f"{shift.k:.1f}x faster" if shift.k >= 1 else f"{1.0 / shift.k:.1f}x slower"
        sign = np.where(points > 0, "+", "")
        text = np.where(
            points != 0,
            f"customers have been leaving {pace} since {shift.start}: "
            + sign
            + points.astype(str)
            + " points of churn probability here (drift correction)",
            "",
        ).astype(object)
        return text, points > 0
