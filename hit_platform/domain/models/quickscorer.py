"""Compile a fitted HistGradientBoostingClassifier over song x country rows into bitmask tables.

Why: the trees model scores one song as 72 rows (one per country) that share
the song's features and differ only in the country (and region) columns.
scikit-learn's predictor walks every tree in a Python loop (milliseconds per
song); this scores all trees x countries with a few numpy operations.

How (QuickScorer, Lucchese et al., SIGIR 2015): number each tree's leaves
left to right (at most 64, one bit each). A split that sends a row right rules
out every leaf of its left subtree, so the row's exit leaf is the leftmost
leaf that survives the AND of the "keep" masks of all splits it fails. Splits
come in two kinds here:

- song splits (numeric feature <= threshold): their outcome depends on the
  song only, so one vectorised comparison per song covers every country;
- country splits (categorical country/region): their outcome depends on the
  country only, so their masks are ANDed once, at compile time, into a
  (trees x 72) table.

A song's exit leaves are then `song_mask[tree] & country_mask[tree, country]`;
the lowest set bit of each is the leaf, and the sum of the leaf values plus
the baseline is the raw score. Countries that no country split of a tree
separates share a country mask, so exit leaves are found once per such
group (about a dozen per tree) and then spread to the 72 countries. The score
is the same as scikit-learn's (up to float
rounding: sums are taken in a fixed order, so results do not depend on the
batch size or the number of threads).
"""

from __future__ import annotations

import numpy as np

MAX_LEAVES = 64  # one bit per leaf in a uint64 mask
_ALL = np.uint64(0xFFFF_FFFF_FFFF_FFFF)
_ONE = np.uint64(1)
# Elements of the biggest temporary array per chunk of songs (bounds memory for large batches).
_CHUNK_ELEMENTS = 1 << 21


class CompiledForest:
    """Raw scores (n_songs, n_outputs) of a boosted-tree ensemble over [song features, output categories].

    Built by `compile_hgb`; picklable; no scikit-learn object is used to predict."""

    def __init__(self, *, n_song_features: int, feature: np.ndarray, threshold: np.ndarray,
                 missing_right: np.ndarray, keep: np.ndarray, tree_start: np.ndarray,
                 group_tree: np.ndarray, group_mask: np.ndarray, group_of: np.ndarray,
                 leaf_value: np.ndarray, baseline: float):
        self.n_song_features = n_song_features
        self.feature = feature            # (n_splits,) song feature of each song split
        self.threshold = threshold        # (n_splits,) go right when x > threshold
        self.missing_right = missing_right  # (n_splits,) where NaN goes
        self.keep = keep                  # (n_splits,) uint64 leaves still reachable after going right
        self.tree_start = tree_start      # (n_trees,) first split of each tree (segments for reduceat)
        self.group_tree = group_tree      # (n_groups,) tree of each output group
        self.group_mask = group_mask      # (n_groups,) uint64 AND of the country splits for the group
        self.group_of = group_of          # (n_trees, n_outputs) group of each output in each tree
        self.leaf_value = leaf_value      # (n_trees * MAX_LEAVES,) leaf values, tree-major
        self.baseline = baseline

    @property
    def n_trees(self) -> int:
        return len(self.tree_start)

    @property
    def n_outputs(self) -> int:
        return self.group_of.shape[1]

    def raw_scores(self, X: np.ndarray) -> np.ndarray:
        """(n, n_outputs) float64 raw scores for X (n, n_song_features); NaN means missing."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_song_features:
            raise ValueError(f"CompiledForest: expected (n, {self.n_song_features}) song features, got {X.shape}")
        n = len(X)
        out = np.empty((n, self.n_outputs))
        per_song = max(len(self.feature), self.group_of.size)
        chunk = max(1, _CHUNK_ELEMENTS // per_song)
        for lo in range(0, n, chunk):
            out[lo:lo + chunk] = self._raw_chunk(X[lo:lo + chunk])
        return out

    def _raw_chunk(self, X: np.ndarray) -> np.ndarray:
        values = X[:, self.feature]                                # (b, n_splits)
        right = values > self.threshold
        missing = np.isnan(values)
        if missing.any():
            right = np.where(missing, self.missing_right, right)
        masks = np.where(right, self.keep, _ALL)
        song_mask = np.bitwise_and.reduceat(masks, self.tree_start, axis=1)  # (b, n_trees)
        alive = song_mask[:, self.group_tree] & self.group_mask             # (b, n_groups)
        lowest = alive & (~alive + _ONE)                                    # lowest set bit
        leaf = np.frexp(lowest.astype(np.float64))[1] - 1                   # its index: exact for 2**k
        value = self.leaf_value[leaf + self.group_tree * MAX_LEAVES]        # (b, n_groups)
        # Sum over trees in tree order (a plain loop over axis 1), whatever the batch size.
        return value[:, self.group_of].sum(axis=1) + self.baseline


def compile_hgb(hgb, output_categories: np.ndarray) -> CompiledForest:
    """CompiledForest of a fitted binary HistGradientBoostingClassifier.

    The model's columns must be the song's numeric features first, then the
    categorical columns whose value depends on the output only;
    output_categories (n_outputs, n_categorical) holds those values for each
    output (e.g. the country's index and its region's index)."""
    if getattr(hgb, "n_trees_per_iteration_", None) != 1:
        raise ValueError("compile_hgb: expected a fitted binary HistGradientBoostingClassifier")
    output_categories = np.asarray(output_categories)
    n_outputs, n_cat = output_categories.shape
    n_song = hgb.n_features_in_ - n_cat
    column_of, codes = _node_layout(hgb, n_song, output_categories)
    known_cats, f_idx_map = hgb._bin_mapper.make_known_categories_bitsets()

    features, thresholds, missing_right, keeps, starts = [], [], [], [], []
    predictors = [p[0] for p in hgb._predictors]
    output_mask = np.full((len(predictors), n_outputs), _ALL, dtype=np.uint64)
    leaf_value = np.zeros((len(predictors), MAX_LEAVES))
    for t, predictor in enumerate(predictors):
        nodes = predictor.nodes
        leaf_bits = _leaf_bits(nodes)
        if len(leaf_bits["leaves"]) > MAX_LEAVES:
            raise ValueError(f"compile_hgb: tree {t} has {len(leaf_bits['leaves'])} leaves; "
                             f"at most {MAX_LEAVES} are supported (lower max_leaf_nodes)")
        for i, node in enumerate(leaf_bits["leaves"]):
            leaf_value[t, i] = nodes[node]["value"]
        starts.append(len(features))
        # A split that never fails keeps every tree's segment non-empty for reduceat.
        features.append(0), thresholds.append(np.inf), missing_right.append(False), keeps.append(_ALL)
        for node in np.flatnonzero(~nodes["is_leaf"].astype(bool)):
            rec = nodes[node]
            keep = ~leaf_bits["subtree"][int(rec["left"])]
            f = column_of[int(rec["feature_idx"])]
            if f < n_song:
                if rec["is_categorical"]:
                    raise ValueError(f"compile_hgb: song feature {f} must be numeric, not categorical")
                features.append(f)
                thresholds.append(float(rec["num_threshold"]))
                missing_right.append(not bool(rec["missing_go_to_left"]))
                keeps.append(keep)
            else:
                goes_left = _categorical_goes_left(rec, predictor.raw_left_cat_bitsets, known_cats,
                                                   f_idx_map, codes[:, f - n_song])
                output_mask[t, ~goes_left] &= keep
    # Countries that no country split of a tree separates share that tree's exit leaf: compute it
    # once per group (about a dozen per tree instead of 72).
    group_tree, group_mask, group_of = [], [], np.empty(output_mask.shape, dtype=np.intp)
    for t, masks in enumerate(output_mask):
        unique, inverse = np.unique(masks, return_inverse=True)
        group_of[t] = len(group_tree) + inverse
        group_tree.extend([t] * len(unique))
        group_mask.extend(unique)
    return CompiledForest(
        n_song_features=n_song,
        feature=np.array(features, dtype=np.intp),
        threshold=np.array(thresholds, dtype=np.float64),
        missing_right=np.array(missing_right, dtype=bool),
        keep=np.array(keeps, dtype=np.uint64),
        tree_start=np.array(starts, dtype=np.intp),
        group_tree=np.array(group_tree, dtype=np.intp),
        group_mask=np.array(group_mask, dtype=np.uint64),
        group_of=group_of,
        leaf_value=leaf_value.ravel(),
        baseline=float(np.asarray(hgb._baseline_prediction).ravel()[0]),
    )


def _node_layout(hgb, n_song: int, output_categories: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(original column of each internal feature, internal category codes of each output).

    With categorical features, scikit-learn puts them first (ordinal-encoded, in
    the order of their columns) and the numeric ones after, so a node's
    feature_idx is an internal index; category codes are positions in the
    encoder's sorted categories (-1 for a category unseen in training)."""
    n_features = hgb.n_features_in_
    if hgb._preprocessor is None:
        raise ValueError("compile_hgb: the model has no categorical features (expected the output columns)")
    is_cat = np.asarray(hgb.is_categorical_, dtype=bool)
    if is_cat[:n_song].any() or not is_cat[n_song:].all():
        raise ValueError(f"compile_hgb: columns 0..{n_song - 1} must be numeric song features and "
                         f"columns {n_song}..{n_features - 1} categorical")
    column_of = np.concatenate([np.flatnonzero(is_cat), np.flatnonzero(~is_cat)])
    categories = hgb._preprocessor.named_transformers_["encoder"].categories_
    codes = np.empty(output_categories.shape, dtype=np.int64)
    for j, cats in enumerate(categories):
        pos = np.clip(np.searchsorted(cats, output_categories[:, j]), 0, len(cats) - 1)
        codes[:, j] = np.where(cats[pos] == output_categories[:, j], pos, -1)
    return column_of, codes


def _leaf_bits(nodes: np.ndarray) -> dict:
    """Leaves numbered left to right, and for every node the bitmask of the leaves below it."""
    leaves: list[int] = []
    subtree = {}

    def visit(i: int) -> np.uint64:
        if nodes[i]["is_leaf"]:
            subtree[i] = _ONE << np.uint64(len(leaves))
            leaves.append(i)
        else:
            subtree[i] = visit(int(nodes[i]["left"])) | visit(int(nodes[i]["right"]))
        return subtree[i]

    visit(0)
    return {"leaves": leaves, "subtree": subtree}


def _categorical_goes_left(rec, raw_left_bitsets: np.ndarray, known_bitsets: np.ndarray,
                           f_idx_map: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Where each output's category goes at a categorical split: scikit-learn's rule, vectorised
    (in the split's left set -> left; a known category not in it -> right; unknown -> like missing)."""
    missing_left = bool(rec["missing_go_to_left"])
    unseen = values < 0
    values = np.where(unseen, 0, values).astype(np.int64)

    def in_bitset(bitset: np.ndarray) -> np.ndarray:
        return ((bitset[values // 32] >> (values % 32).astype(np.uint32)) & 1).astype(bool)

    left = in_bitset(raw_left_bitsets[int(rec["bitset_idx"])])
    known = in_bitset(known_bitsets[int(f_idx_map[int(rec["feature_idx"])])])
    goes_left = np.where(left, True, np.where(known, False, missing_left))
    return np.where(unseen, missing_left, goes_left)
