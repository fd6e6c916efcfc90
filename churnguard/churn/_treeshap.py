"""Exact TreeSHAP for shallow LightGBM trees, by table lookup.

The reasons of the list are the churn model's per-customer feature contributions:
path-dependent TreeSHAP, which LightGBM computes with ``pred_contrib``. LightGBM runs
the recursive algorithm for every row and leaf (``O(trees x leaves x depth^2)``), about
half a millisecond per customer for churnguard's model; explaining the top 25,000 of a
million-customer list cost 13 CPU-seconds of ``churnguard score``.

For one leaf, the contribution to each feature on its path depends on the row only
through which of the path's features the row agrees with: ``d <= depth`` bits. With
``o_j`` that bit and ``z_j`` the share of the training rows that followed the path's
edges on feature ``j`` (LightGBM's leaf and node counts), the leaf adds to feature
``i`` (Lundberg et al. 2018; the path's other features are the players)

    v_leaf x (o_i - z_i) x sum over S in U - {i} of
        |S|! (d - |S| - 1)! / d! x prod_{j in S} o_j x prod_{j not in S, j != i} z_j

so every leaf gets a table of its ``2^d`` possible answers once, and a row costs one
comparison per node and one lookup per (leaf, path feature). The numbers are
LightGBM's up to the order of floating-point additions (about 1e-15; tests check
against ``pred_contrib``). Paths are padded to the deepest one with a feature that
always agrees and never splits (``z = 1``): a null player, which changes no Shapley
value.

:func:`path_tables` returns None for what it does not cover (categorical splits,
linear trees, multiclass models, paths with more than :data:`MAX_PATH_FEATURES`
distinct features); the caller then asks LightGBM.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["MAX_PATH_FEATURES", "PathTables", "path_tables"]

log = logging.getLogger(__name__)

#: Distinct features on a leaf's path beyond which tables stop paying (2^d rows each).
MAX_PATH_FEATURES = 6

#: LightGBM's kZeroThreshold, a C++ float: |x| at or below it is "zero" for missing_type
#: Zero (and LightGBM puts split thresholds exactly there).
_ZERO = float(np.float32(1e-35))

#: Rows explained per block: the lookups of a block stay in cache.
_BLOCK = 64

#: Numbers held at once while the tables are built (8 bytes each).
_TABLE_CELLS = 2_000_000

_MISSING = {"None": 0, "Zero": 1, "NaN": 2}


@dataclass(frozen=True)
class PathTables:
    """A booster's leaves as lookup tables (see the module docstring)."""

    n_features: int
    bias: float  # sum of the trees' expected values (LightGBM's last column)
    feature: np.ndarray  # per split node
    threshold: np.ndarray
    nan_left: np.ndarray  # where a missing value goes, per node
    zero_default: np.ndarray  # nodes whose zeros take the default side (missing_type Zero)
    default_left: np.ndarray
    path_nodes: list[np.ndarray]  # per depth: the node each leaf tests there
    path_left: list[np.ndarray]  # per depth: the side the leaf's path takes
    path_bit: list[np.ndarray]  # per depth: the bit of the tested feature in the pattern
    width: int  # padded path features per leaf
    pair_leaf: np.ndarray  # (leaf, path feature) pairs, sorted by feature
    pair_base: np.ndarray
    pair_bounds: list[tuple[int, int, int]]  # (feature, start, end) runs of pairs
    values: np.ndarray  # the tables, flat: [leaf, pattern, path feature]

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Contributions to the raw score, ``(n, n_features + 1)``, bias last."""
        x = np.asarray(X, dtype=float)
        out = np.zeros((len(x), self.n_features + 1))
        out[:, -1] = self.bias
        full = (1 << self.width) - 1
        for start in range(0, len(x), _BLOCK):
            go = self._decisions(np.ascontiguousarray(x[start : start + _BLOCK].T))
            bad = np.zeros((len(self.path_nodes[0]), go.shape[1]), dtype=np.uint8)
            for nodes, left, bit in zip(
                self.path_nodes, self.path_left, self.path_bit, strict=True
            ):
                bad |= (go[nodes] != left) * bit
            pattern = (full & ~bad).astype(np.intp) * self.width
            index = pattern[self.pair_leaf]
            index += self.pair_base
            looked = self.values[index]
            block = out[start : start + _BLOCK]
            for feature, lo, hi in self.pair_bounds:
                block[:, feature] = looked[lo:hi].sum(axis=0)
        return out

    def _decisions(self, xt: np.ndarray) -> np.ndarray:
        """Which side each row takes at each node, ``(nodes + 1, rows)``; the last row
        is an always-true node that padded path steps test."""
        v = xt[self.feature]
        # LightGBM reads a row as sparse: values within its zero threshold become 0.0.
        tiny = np.abs(v) <= _ZERO
        if tiny.any():
            v = np.where(tiny, 0.0, v)
        go = v <= self.threshold[:, None]
        missing = np.isnan(v)
        if missing.any():
            go = np.where(missing, self.nan_left[:, None], go)
        if self.zero_default.any():
            zero = self.zero_default[:, None] & tiny
            go = np.where(zero, self.default_left[:, None], go)
        return np.vstack([go, np.ones((1, go.shape[1]), dtype=bool)])


def _count(node: dict[str, Any]) -> float:
    return float(node["leaf_count"] if "leaf_value" in node else node["internal_count"])


def _leaves(
    root: dict[str, Any], first_node: int
) -> tuple[list[dict[str, Any]], list[tuple[float, list[tuple[int, bool, int]], list[list[Any]]]]]:
    """Split nodes in order and, per leaf, (value, path steps, [feature, z] per slot)."""
    nodes: list[dict[str, Any]] = []
    leaves: list[tuple[float, list[tuple[int, bool, int]], list[list[Any]]]] = []
    stack: list[tuple[dict[str, Any], list[tuple[int, bool, dict[str, Any], dict[str, Any]]]]]
    stack = [(root, [])]
    while stack:
        node, path = stack.pop()
        if "leaf_value" in node:
            slots: dict[int, int] = {}
            zs: list[list[Any]] = []
            steps: list[tuple[int, bool, int]] = []
            for nid, left, parent, child in path:
                f = int(parent["split_feature"])
                if f not in slots:
                    slots[f] = len(zs)
                    zs.append([f, 1.0])
                zs[slots[f]][1] *= _count(child) / _count(parent)
                steps.append((nid, left, slots[f]))
            leaves.append((float(node["leaf_value"]), steps, zs))
            continue
        nid = first_node + len(nodes)
        nodes.append(node)
        stack.append((node["right_child"], [*path, (nid, False, node, node["right_child"])]))
        stack.append((node["left_child"], [*path, (nid, True, node, node["left_child"])]))
    return nodes, leaves


def _tables(z: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Per leaf, the contribution of each path slot for each agreement pattern."""
    # The products below hold (2^width)^2 x width numbers per leaf: in chunks of leaves,
    # a thousand deep trees stay within tens of megabytes.
    step = max(1, _TABLE_CELLS // (1 << (2 * z.shape[1])) // z.shape[1] ** 2)
    parts = [_table_chunk(z[i : i + step], value[i : i + step]) for i in range(0, len(z), step)]
    return np.concatenate(parts) if parts else np.zeros((0, 1 << z.shape[1], z.shape[1]))


def _table_chunk(z: np.ndarray, value: np.ndarray) -> np.ndarray:
    n_leaves, width = z.shape
    patterns = np.arange(1 << width)
    bits = (patterns[:, None] >> np.arange(width)[None, :]) & 1  # [pattern, slot]
    in_s = bits.astype(bool)  # the same bitmasks read as coalitions S
    size = in_s.sum(axis=1)
    weight = np.array(
        [
            math.factorial(int(s)) * math.factorial(width - int(s) - 1) / math.factorial(width)
            if s < width
            else 0.0
            for s in size
        ]
    )
    w_sk = weight[:, None] * ~in_s  # S may not contain the slot explained
    subset = ((patterns[None, :] & ~patterns[:, None]) == 0).astype(float)  # [p, S]: S in p
    slot = np.arange(width)
    others = ~in_s[:, None, :] & (slot[None, :, None] != slot[None, None, :])  # [S, k, j]
    z_out = np.prod(np.where(others[None], z[:, None, None, :], 1.0), axis=3)  # [leaf, S, k]
    g = np.einsum("ps,sk,lsk->lpk", subset, w_sk, z_out)
    return value[:, None, None] * (bits[None].astype(float) - z[:, None, :]) * g


def path_tables(booster: Any, num_iteration: int | None = None) -> PathTables | None:
    """Tables for a LightGBM ``Booster``, or None where LightGBM must compute.

    ``num_iteration`` as in ``Booster.predict`` (None: the best iteration if any).
    A dump this module cannot read also gives None: LightGBM then computes.
    """
    try:
        return _path_tables(booster.dump_model(num_iteration=num_iteration))
    except (KeyError, TypeError, ValueError) as exc:
        log.debug("TreeSHAP tables unavailable (%r): LightGBM computes", exc)
        return None


def _path_tables(dump: dict[str, Any]) -> PathTables | None:
    if int(dump.get("num_class", 1)) != 1 or int(dump.get("num_tree_per_iteration", 1)) != 1:
        return None
    n_features = int(dump["max_feature_idx"]) + 1
    nodes: list[dict[str, Any]] = []
    leaves: list[tuple[float, list[tuple[int, bool, int]], list[list[Any]]]] = []
    bias = 0.0
    for tree in dump["tree_info"]:
        root = tree["tree_structure"]
        if "leaf_value" in root:  # a tree without a split: a constant
            bias += float(root["leaf_value"])
            continue
        tree_nodes, tree_leaves = _leaves(root, len(nodes))
        if any(n.get("decision_type") != "<=" for n in tree_nodes):
            return None  # categorical splits
        leaf_nodes = _all_leaves(root)
        if any("leaf_coeff" in n or "leaf_const" in n for n in leaf_nodes):
            return None  # linear trees
        total = _count(root)
        bias += sum(_count(leaf) / total * float(leaf["leaf_value"]) for leaf in leaf_nodes)
        nodes.extend(tree_nodes)
        leaves.extend(tree_leaves)
    if not leaves:
        return _constant(n_features, bias)
    width = max(len(zs) for _, _, zs in leaves)
    depth = max(len(steps) for _, steps, _ in leaves)
    if width > MAX_PATH_FEATURES:
        return None
    n_leaves, always = len(leaves), len(nodes)  # the always-true node comes last
    step_node = np.full((n_leaves, depth), always, dtype=np.intp)
    step_left = np.ones((n_leaves, depth), dtype=bool)
    step_slot = np.zeros((n_leaves, depth), dtype=np.uint8)
    z = np.ones((n_leaves, width))
    slot_feature = np.full((n_leaves, width), -1, dtype=np.intp)  # -1: padding
    value = np.empty(n_leaves)
    for i, (v, steps, zs) in enumerate(leaves):
        value[i] = v
        for r, (nid, left, k) in enumerate(steps):
            step_node[i, r], step_left[i, r], step_slot[i, r] = nid, left, k
        for k, (f, share) in enumerate(zs):
            slot_feature[i, k], z[i, k] = f, share
    pairs = slot_feature.reshape(-1)
    order = np.flatnonzero(pairs >= 0)
    order = order[np.argsort(pairs[order], kind="stable")]
    features = pairs[order]
    starts = np.r_[0, np.flatnonzero(np.diff(features)) + 1]
    ends = np.r_[starts[1:], len(order)]
    leaf_of = order // width
    patterns = 1 << width
    missing = np.array([_MISSING[str(n["missing_type"])] for n in nodes], dtype=np.int8)
    default_left = np.array([bool(n["default_left"]) for n in nodes])
    threshold = np.array([float(n["threshold"]) for n in nodes])
    # LightGBM reads a missing value as 0.0 unless the node learned where missing goes.
    nan_left = np.where(missing == 0, 0.0 <= threshold, default_left)
    return PathTables(
        n_features=n_features,
        bias=bias,
        feature=np.array([int(n["split_feature"]) for n in nodes], dtype=np.intp),
        threshold=threshold,
        nan_left=nan_left,
        zero_default=missing == 1,
        default_left=default_left,
        path_nodes=[np.ascontiguousarray(step_node[:, r]) for r in range(depth)],
        path_left=[step_left[:, r][:, None] for r in range(depth)],
        path_bit=[(1 << step_slot[:, r]).astype(np.uint8)[:, None] for r in range(depth)],
        width=width,
        pair_leaf=leaf_of.astype(np.intp),
        pair_base=(leaf_of * patterns * width + order % width).astype(np.intp)[:, None],
        pair_bounds=[
            (int(f), int(a), int(b)) for f, a, b in zip(features[starts], starts, ends, strict=True)
        ],
        values=_tables(z, value).reshape(-1),
    )


def _all_leaves(root: dict[str, Any]) -> list[dict[str, Any]]:
    out, stack = [], [root]
    while stack:
        node = stack.pop()
        if "leaf_value" in node:
            out.append(node)
        else:
            stack.extend((node["left_child"], node["right_child"]))
    return out


def _constant(n_features: int, bias: float) -> PathTables:
    """Every tree a constant: all contributions 0, the bias their sum."""
    empty = np.zeros(0, dtype=np.intp)
    return PathTables(
        n_features=n_features,
        bias=bias,
        feature=empty,
        threshold=np.zeros(0),
        nan_left=np.zeros(0, dtype=bool),
        zero_default=np.zeros(0, dtype=bool),
        default_left=np.zeros(0, dtype=bool),
        path_nodes=[np.zeros(0, dtype=np.intp)],
        path_left=[np.ones((0, 1), dtype=bool)],
        path_bit=[np.zeros((0, 1), dtype=np.uint8)],
        width=1,
        pair_leaf=empty,
        pair_base=np.zeros((0, 1), dtype=np.intp),
        pair_bounds=[],
        values=np.zeros(0),
    )
