"""Ranking, candidate pairs and greedy matching for :mod:`gaf.metrics.detection` (vectorised, exact).

Times are seconds; "blocks" are (class, video) ids, so only segments of the
same class and video ever pair. :func:`candidate_pairs` finds the
(prediction, ground truth) pairs whose tIoU may pass, :func:`iou` scores them
with the official operation order, and :func:`greedy` runs the sequential
greedy matching of the official evaluation (or of the THUMOS'14 toolkit, with
the roles swapped) at every threshold at once.
"""

from __future__ import annotations

import numpy as np

__all__ = ["candidate_pairs", "expand", "greedy", "iou", "rank_order", "same_key_pairs", "stable_argsort",
           "suffix_max"]


def iou(ps: np.ndarray, pe: np.ndarray, gs: np.ndarray, ge: np.ndarray) -> np.ndarray:
    """Elementwise tIoU with the official operation order; 0 where the union is 0."""
    inter = (np.minimum(pe, ge) - np.maximum(ps, gs)).clip(0)
    union = (ge - gs) + (pe - ps) - inter
    out = np.zeros(np.broadcast(inter, union).shape)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def stable_argsort(keys: np.ndarray, upper: int) -> np.ndarray:
    """Stable argsort of integers in ``[0, upper)``.

    NumPy radix-sorts 16-bit integers (several times faster than its merge
    sort of int64), so keys below 2**32 are sorted by two 16-bit digits,
    least significant first.
    """
    if upper <= 1 << 16:
        return np.argsort(keys.astype(np.uint16), kind="stable")
    if upper <= 1 << 32:
        order = np.argsort((keys & 0xFFFF).astype(np.uint16), kind="stable")
        return order[np.argsort((keys[order] >> 16).astype(np.uint16), kind="stable")]
    return np.argsort(keys, kind="stable")


# ---------------------------------------------------------------- ranking and envelopes
def _descending_key(score: np.ndarray) -> np.ndarray:
    """uint64 keys whose ascending order is ``score``'s descending order (finite scores; 0.0 == -0.0)."""
    bits = (score + 0.0).view(np.uint64)  # + 0.0 turns -0.0 into 0.0
    negative = (bits >> np.uint64(63)).astype(bool)
    return np.where(negative, bits, ~bits & np.uint64(0x7FFFFFFFFFFFFFFF))


def rank_order(score: np.ndarray, label: np.ndarray, num_classes: int) -> np.ndarray:
    """Indices ordering predictions by class, then score descending, then file position.

    Fast path: one plain (SIMD) sort of uint64 words packing the class, the
    top bits of the score's order-preserving key and the file position. It
    is exact unless two predictions of a class share those top bits with
    different scores (checked), or fewer than 32 key bits fit; then the
    exact path runs: argsort of the full keys, a stable (radix) sort of the
    classes.
    """
    n = len(score)
    key = _descending_key(score)
    index_bits = max((n - 1).bit_length(), 1)
    kept_bits = 64 - max((num_classes - 1).bit_length(), 1) - index_bits
    if n and kept_bits >= 32:
        packed = ((label.astype(np.uint64) << (kept_bits + index_bits)) | ((key >> (64 - kept_bits)) << index_bits)
                  | np.arange(n, dtype=np.uint64))
        packed.sort()
        order = (packed & ((1 << index_bits) - 1)).astype(np.int64)
        head = packed >> index_bits
        same = head[1:] == head[:-1]
        if not same.any() or np.array_equal(key[order[1:][same]], key[order[:-1][same]]):
            return order
    by_score = np.argsort(key)
    ranked = key[by_score]
    if (ranked[1:] == ranked[:-1]).any():  # ties: only a stable sort keeps file order
        by_score = np.argsort(key, kind="stable")
    return by_score[stable_argsort(label[by_score], num_classes)]


def suffix_max(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """``max(values[j] for j >= i in i's group)`` for each i; groups are contiguous, starting at ``starts``.

    Exact: one row per group, values reversed into it and padded with -inf,
    then a running maximum along the rows; when one long group would make
    that table large, ranks of the values stand in for them instead.
    """
    n = len(values)
    lengths = np.diff(np.r_[starts, n])
    rows, cols = len(starts), int(lengths.max())
    if rows * cols <= 4 * n + 4096:
        row = np.repeat(np.arange(rows), lengths)
        col = cols - 1 - (np.arange(n) - np.repeat(starts, lengths))
        table = np.full((rows, cols), -np.inf)
        table[row, col] = values
        return np.maximum.accumulate(table, axis=1)[row, col]
    order = np.argsort(values)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    group = np.repeat(np.arange(rows), lengths)
    # Reversed, earlier groups get larger offsets, so a running max never crosses into another group.
    offset = (rows - group) * n
    running = np.maximum.accumulate((offset + rank)[::-1])[::-1]
    return values[order[running - offset]]


# ---------------------------------------------------------------- candidate pairs
def expand(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(i, j)`` for every ``lo[i] <= j < hi[i]``, i ascending."""
    counts = np.maximum(hi - lo, 0)
    i = np.repeat(np.arange(len(lo)), counts)
    starts = np.cumsum(counts) - counts
    return i, lo[i] + (np.arange(len(i)) - starts[i])


def same_key_pairs(key_a: np.ndarray, key_b_sorted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All ``(i, j)`` with ``key_a[i] == key_b_sorted[j]`` (``key_b_sorted`` ascending)."""
    return expand(np.searchsorted(key_b_sorted, key_a, "left"), np.searchsorted(key_b_sorted, key_a, "right"))


def candidate_pairs(a_block: np.ndarray, a_start: np.ndarray, a_end: np.ndarray, b_block: np.ndarray,
                    b_start: np.ndarray, b_end: np.ndarray, min_iou: float) -> tuple[np.ndarray, np.ndarray]:
    """A superset of the pairs ``(i, j)`` in the same block (ids >= 0) whose tIoU may reach ``min_iou`` > 0.

    Such an ``a[i]`` intersects ``b[j]`` and is at most ``len(b[j]) /
    min_iou`` long, so it starts in ``(b.start - len(b) / min_iou, b.end)``:
    one range of the ``a`` sorted by a float key ``block * W + start`` (W
    more than twice the time span, so blocks never mix), found by two binary
    searches per ``b``. Only the ``a`` whose block holds some ``b`` are
    sorted. The ranges are widened (relative 1e-9 on the length bound, a few
    ulps of the largest key), so rounding can only add pairs, never drop one:
    the caller keeps those of the same block whose exact tIoU passes.
    """
    empty = np.zeros(0, np.int64)
    if len(a_block) == 0 or len(b_block) == 0:
        return empty, empty
    top = max(int(a_block.max()), int(b_block.max())) + 1
    occupied = np.zeros(top + 1, dtype=bool)  # the last slot stands for block -1 (never occupied)
    occupied[b_block] = True
    query = np.flatnonzero(occupied[a_block])
    if len(query) == 0:
        return empty, empty
    a_block, a_start = a_block[query], a_start[query]
    t0 = min(float(a_start.min()), float(b_start.min()))
    span = max(float(a_end.max()), float(b_end.max())) - t0
    width = 2.0 * span + 1.0
    # |key| <= top * width; 16 ulps of it stay far below the gap between blocks (width - span > span + 1)
    # for any number of blocks that fits in memory.
    eps = 16.0 * np.spacing(top * width)
    a_key = a_block * width + (a_start - t0)
    order = np.argsort(a_key)
    a_key = a_key[order]
    base = b_block * width
    reach = np.minimum((b_end - b_start) * ((1.0 + 1e-9) / min_iou), span + 1.0)
    lo = np.searchsorted(a_key, base + (b_start - t0) - reach - eps, "left")
    hi = np.searchsorted(a_key, base + (b_end - t0) + eps, "right")
    j, k = expand(lo, hi)
    return query[order[k]], j


# ---------------------------------------------------------------- greedy matching
def _components(prop: np.ndarray, targ: np.ndarray) -> np.ndarray:
    """Connected component of each pair in the bipartite graph of the pairs (a label per pair)."""
    up, pinv = np.unique(prop, return_inverse=True)
    _, tinv = np.unique(targ, return_inverse=True)
    by_t = np.argsort(tinv, kind="stable")
    t_starts = np.flatnonzero(np.r_[True, tinv[by_t][1:] != tinv[by_t][:-1]])
    by_p = np.argsort(pinv, kind="stable")
    p_starts = np.flatnonzero(np.r_[True, pinv[by_p][1:] != pinv[by_p][:-1]])
    label = np.arange(len(up))
    while True:
        lab_t = np.minimum.reduceat(label[pinv][by_t], t_starts)
        new = np.minimum.reduceat(lab_t[tinv][by_p], p_starts)
        if np.array_equal(new, label):
            return label[pinv]
        label = new[new]  # pointer jumping: a label names a proposer of the same component


def _single_wins(prop: np.ndarray, targ: np.ndarray, level: np.ndarray, num_prop: int, num_targ: int,
                 pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Single-candidate proposers: which is the first of its target passing each threshold, ignoring the others.

    ``level[k]`` counts the distinct thresholds pair k passes (it passes
    threshold i iff ``pos[i] < level[k]``). In rank order within a target,
    proposer k is the first passing threshold i iff no earlier one of that
    target passes it: iff ``before[k] <= pos[i] < level[k]``, ``before`` the
    largest level of the earlier ones. Returns ``(prop, targ, wins (T, n))``
    in (target, rank) order.
    """
    if len(prop) == 0:
        return prop, targ, np.zeros((len(pos), 0), dtype=bool)
    width = int(level.max()) + 1
    level_bits, prop_bits = width.bit_length(), max((num_prop - 1).bit_length(), 1)
    if level_bits + prop_bits + max((num_targ - 1).bit_length(), 1) <= 63:
        # One packed key (target, proposer, level): a plain (SIMD) sort instead of argsorts.
        key = np.sort((((targ << prop_bits) | prop) << level_bits) | level)
        level = key & ((1 << level_bits) - 1)
        prop = (key >> level_bits) & ((1 << prop_bits) - 1)
        targ = key >> (level_bits + prop_bits)
    else:
        order = np.argsort(prop)  # one pair per proposer: distinct
        order = order[stable_argsort(targ[order], num_targ)]
        prop, targ, level = prop[order], targ[order], level[order]
    group = np.cumsum(np.r_[True, targ[1:] != targ[:-1]])
    running = np.maximum.accumulate(group * width + level)  # offsets keep each target's maximum its own
    before = np.zeros_like(running)
    before[1:] = (running[:-1] - group[1:] * width).clip(0)  # < 0 at a target's first proposer
    return prop, targ, (before[None, :] <= pos) & (pos < level[None, :])


def greedy(prop: np.ndarray, targ: np.ndarray, value: np.ndarray, targ_pref: np.ndarray, num_prop: int,
           num_targ: int, tious: np.ndarray, strict: bool,
           want_targets: bool = True) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Sequential greedy matching at every threshold, vectorised over independent groups and thresholds.

    (One algorithm, kept in one function on purpose: its rounds share the
    state of which targets are taken at which threshold.)

    Candidate pairs ``(prop[k], targ[k])`` have overlap ``value[k]``.
    Proposers (``0 <= prop < num_prop``) act in ascending index; each takes the first
    target, by descending ``value`` then ascending ``targ_pref``, that is
    still free at that threshold and whose value is ``>= t`` (``> t`` when
    ``strict``).

    The same result without walking every proposer: a proposer with a single
    candidate target gets it iff it is the first such proposer of that target
    passing the threshold and no proposer with several candidates took the
    target before it. Those with several candidates only compete inside a
    connected component of their pair graph, so the components run side by
    side, one proposer per component per step, each seeing a target as free
    if no earlier single-candidate proposer passing the threshold wants it.
    Returns ``(matched, taken)``: ``matched[i]`` the proposers matched at
    ``tious[i]``, ascending; ``taken`` (T, num_targ) bool, the matched
    targets, ``None`` unless ``want_targets``.
    """
    T = len(tious)
    taken = np.zeros((T, num_targ), dtype=bool)
    if len(prop) == 0:
        return [np.zeros(0, dtype=np.int64) for _ in range(T)], taken if want_targets else None
    multi_t: list[np.ndarray] = []  # thresholds and proposers of the matches of multi-candidate proposers
    multi_p: list[np.ndarray] = []
    levels, pos = np.unique(tious, return_inverse=True)
    pos = pos.reshape(T, 1)
    # Pair k passes threshold i iff pos[i] < level[k] (value > or >= the threshold): exact integer tests.
    level = np.zeros(len(value), dtype=np.int64)
    for t in levels:  # a few thresholds: comparisons beat a binary search per pair
        level += (value > t) if strict else (value >= t)
    one = np.bincount(prop, minlength=num_prop)[prop] == 1
    sp, st, wins = _single_wins(prop[one], targ[one], level[one], num_prop, num_targ, pos)
    multi = ~one
    if multi.any():
        mp, mt, mv, ml = prop[multi], targ[multi], value[multi], level[multi]
        # The targets multi-candidate proposers want, numbered locally.
        mtargets, local = np.unique(mt, return_inverse=True)
        never = np.iinfo(np.int64).max
        first_single = np.full((T, len(mtargets)), never, dtype=np.int64)
        local_of = np.full(num_targ, -1, dtype=np.int64)
        local_of[mtargets] = np.arange(len(mtargets))
        hit = np.flatnonzero(local_of[st] >= 0)  # single-candidate proposers wanting one of those targets
        shared = local_of[st[hit]]
        if len(hit):
            ti, k = np.divmod(np.flatnonzero(wins[:, hit]), len(hit))
            first_single[ti, shared[k]] = sp[hit[k]]
        blocked = np.zeros((T, len(mtargets)), dtype=bool)
        comp = _components(mp, mt)
        order = np.lexsort((targ_pref[mt], -mv, mp, comp))
        mp, local, ml, comp = mp[order], local[order], ml[order], comp[order]
        new_prop = np.r_[True, mp[1:] != mp[:-1]]
        new_comp = np.r_[True, comp[1:] != comp[:-1]]
        count = np.cumsum(new_prop)
        step = count - count[np.flatnonzero(new_comp)][np.cumsum(new_comp) - 1]
        order = np.argsort(step, kind="stable")
        mp, local, ml, step, new_prop = mp[order], local[order], ml[order], step[order], new_prop[order]
        seg_start = np.flatnonzero(new_prop)
        bounds = np.searchsorted(step, np.arange(int(step[-1]) + 2))
        seg_bounds = np.searchsorted(seg_start, bounds)
        for s in range(len(bounds) - 1):
            a, b = bounds[s], bounds[s + 1]
            g = local[a:b]
            ok = (pos < ml[a:b]) & ~blocked[:, g] & (first_single[:, g] > mp[a:b])
            n = b - a
            first = np.minimum.reduceat(np.where(ok, np.arange(n), n), seg_start[seg_bounds[s]:seg_bounds[s + 1]] - a,
                                        axis=1)
            ti, si = np.nonzero(first < n)
            blocked[ti, g[first[ti, si]]] = True
            multi_t.append(ti)
            multi_p.append(mp[a + first[ti, si]])
        taken[:, mtargets] = blocked
        if len(hit):
            # A single-candidate proposer wins unless a multi-candidate one took its target first.
            wins[:, hit] &= ~blocked[:, shared]
    if len(sp) and want_targets:
        ti, k = np.divmod(np.flatnonzero(wins), len(sp))
        taken[ti, st[k]] = True
    mt_all = np.concatenate(multi_t) if multi_t else np.zeros(0, dtype=np.int64)
    mp_all = np.concatenate(multi_p) if multi_p else np.zeros(0, dtype=np.int64)
    matched = [np.sort(np.concatenate([sp[wins[t]], mp_all[mt_all == t]]) if len(mp_all) else sp[wins[t]])
               for t in range(T)]
    return matched, taken if want_targets else None
