"""The centroid head of E2B/E4B-style assistants: balanced clusters of the head's token rows, and
centroids trained so that the target's next token falls in the top-k scored clusters.

`token_ordering` lists the vocabulary cluster by cluster (cluster c owns entries
[c * V/C, (c+1) * V/C)). Tokens the training data uses ("active" tokens) are spread over the
first clusters, about half of each cluster's slots, by a capacity-constrained k-means on their
normalised head rows; the remaining slots and clusters hold the other ids, whose centroids are
trained to score low.
"""
import math

import numpy as np
import torch


def balanced_clusters(rows, n_clusters, capacity, iters=12, seed=0):
    """Assigns each row (of [N, D]) to one of n_clusters with at most `capacity` rows each
    (N <= n_clusters * capacity) by k-means on the unit sphere with capacity-limited
    assignment: tokens with the clearest preference choose first. Returns [N] cluster ids."""
    x = torch.nn.functional.normalize(torch.as_tensor(rows, dtype=torch.float32), dim=-1)
    n = x.shape[0]
    assert n <= n_clusters * capacity
    g = torch.Generator().manual_seed(seed)
    cent = x[torch.randperm(n, generator=g)[:n_clusters]].clone()
    if cent.shape[0] < n_clusters:  # fewer rows than clusters: random extra centres
        extra = torch.nn.functional.normalize(torch.randn(n_clusters - cent.shape[0], x.shape[1],
                                                          generator=g), dim=-1)
        cent = torch.cat([cent, extra])
    assign = torch.zeros(n, dtype=torch.long)
    for _ in range(iters):
        s = x @ cent.t()  # [N, C]
        top = torch.topk(s, min(8, n_clusters), dim=-1)
        margin = top.values[:, 0] - (top.values[:, 1] if n_clusters > 1 else 0)
        order = torch.argsort(margin, descending=True)
        load = np.zeros(n_clusters, np.int64)
        assign = np.full(n, -1, np.int64)
        pref = top.indices.numpy()
        for i in order.numpy():
            for c in pref[i]:
                if load[c] < capacity:
                    assign[i] = c
                    load[c] += 1
                    break
        left = np.nonzero(assign < 0)[0]
        if len(left):  # none of their 8 favourites had room: best cluster with room
            sl = s[torch.from_numpy(left)].numpy()
            for j, i in enumerate(left):
                for c in np.argsort(-sl[j]):
                    if load[c] < capacity:
                        assign[i] = c
                        load[c] += 1
                        break
        assign = torch.from_numpy(assign)
        sums = torch.zeros_like(cent).index_add_(0, assign, x)
        cnt = torch.bincount(assign, minlength=n_clusters).float()[:, None]
        cent = torch.where(cnt > 0, torch.nn.functional.normalize(sums, dim=-1), cent)
    return assign.numpy()


def build_ordering(vocab, n_clusters, active_ids, active_rows, seed=0):
    """(ordering [vocab] int64, cluster_of [vocab]): active ids clustered over the first clusters
    at about half of each cluster's size, every other id after them."""
    per = vocab // n_clusters
    active_ids = np.asarray(active_ids, np.int64)
    n_active = len(active_ids)
    used_clusters = min(n_clusters, max(1, math.ceil(2 * n_active / per)))
    capacity = math.ceil(n_active / used_clusters)
    assign = balanced_clusters(active_rows, used_clusters, capacity, seed=seed)
    members = [[] for _ in range(n_clusters)]
    for tok, c in zip(active_ids.tolist(), assign.tolist()):
        members[c].append(tok)
    is_active = np.zeros(vocab, bool)
    is_active[active_ids] = True
    rest = iter(np.nonzero(~is_active)[0].tolist())
    ordering = []
    for c in range(n_clusters):
        m = members[c]
        while len(m) < per:
            m.append(next(rest))
        ordering.extend(m)
    ordering = np.asarray(ordering, np.int64)
    cluster_of = np.empty(vocab, np.int64)
    cluster_of[ordering] = np.arange(vocab) // per
    assert sorted(ordering.tolist()) == list(range(vocab))
    return ordering, cluster_of


def init_centroids(head_rows_full, ordering, n_clusters):
    """Each centroid the mean of its cluster's head rows ([vocab, D] table in id order)."""
    per = len(ordering) // n_clusters
    t = torch.as_tensor(head_rows_full, dtype=torch.float32)[torch.from_numpy(ordering)]
    return t.view(n_clusters, per, -1).mean(1)


def train_centroids(centroids, hidden, labels, cluster_of, top_k, steps=300, lr=1e-2,
                    log=None, seconds=None):
    """Fits centroids [C, D] so that softmax(hidden @ centroids^T) puts each label's cluster
    first (cross-entropy), for `steps` steps or until `seconds` pass. hidden [N, D] are the
    assistant's post-norm draft hiddens, labels [N] the target's next tokens. Returns the
    trained centroids."""
    import time
    stop = time.time() + seconds if seconds is not None else None
    cent = torch.nn.Parameter(centroids.clone())
    opt = torch.optim.Adam([cent], lr=lr)
    y = torch.from_numpy(cluster_of[labels])
    n = hidden.shape[0]
    for step in range(steps):
        if stop is not None and time.time() > stop:
            break
        idx = torch.randint(0, n, (min(n, 4096),))
        loss = torch.nn.functional.cross_entropy(hidden[idx] @ cent.t(), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if log and (step + 1) % 100 == 0:
            log(f"centroids step {step + 1}/{steps}: loss {float(loss):.3f}")
    return cent.detach()


def recall(centroids, hidden, labels, cluster_of, top_k):
    """Fraction of labels whose cluster is among the top_k clusters of its hidden."""
    with torch.no_grad():
        top = torch.topk(hidden @ centroids.t(), top_k, dim=-1).indices
    y = torch.from_numpy(cluster_of[labels])[:, None]
    return float((top == y).any(-1).float().mean())
