"""A PyTorch Gemma 4 text decoder and MTP assistant with Specula's numerics, for training.

The target runs whole sequences from position 0 (causal, sliding-window layers, per-layer
embeddings, cross-layer KV sharing, k_eq_v full layers, routed experts beside the dense MLP,
final softcap).
The assistant runs the draft step (docs/architecture.md, "The assistant's draft step") for many
queries at once: each query has its own pending token, input hidden state, RoPE position P
(constant within a round) and reads the target's keys 0..P-1 (a sliding window of its own width
on sliding layers), so training sees exactly the inference conventions. Both load and save the
Hugging Face layout Specula reads.

Vocabulary: a model may hold embedding rows for a subset of the vocabulary (`VocabMap`): the kept
ids plus one shared "other" row that stands for every id not kept. Expanded to the full
vocabulary (every other id gets that row), it is a standard checkpoint; training adds log(count)
to the other row's logit so that its softmax is the expanded model's. Loaded checkpoints use the
identity map.

Numerics follow Specula (float32 activations, weights widened from their stored dtype, sqrt(H)
rounded to the embedding dtype, RoPE angles in float32 with cos/sin in double, softmax in
float32); RMSNorm statistics are float32 here (Specula: double), one source of the small logit
differences the parity test bounds.
"""
import json
import math
import os
import shutil

import numpy as np
import torch
import torch.nn.functional as F

import safetensors_io as st

# ------------------------------------------------------------------------------------------------
# Configs


class ConfigError(Exception):
    """A config.json this tool cannot use; the message names the file and field."""


def _text_config(root, path):
    mt = root.get("model_type")
    if mt in ("gemma4", "gemma4_unified"):
        if not isinstance(root.get("text_config"), dict):
            raise ConfigError(f"{path}: model_type {mt} needs a text_config object")
        return root["text_config"], "model.language_model."
    if mt in ("gemma4_text", "gemma4_unified_text"):
        return root, "model."
    raise ConfigError(f"{path}: model_type '{mt}' is not a Gemma 4 text decoder "
                      "(expected gemma4, gemma4_unified, gemma4_text or gemma4_unified_text)")


def _rope(text, key, head_dim, default_theta, default_type, default_factor):
    rp = (text.get("rope_parameters") or {}).get(key) or {}
    rtype = rp.get("rope_type", default_type)
    factor = rp.get("partial_rotary_factor", default_factor if rtype == "proportional" else 1.0)
    theta = float(rp.get("rope_theta", default_theta))
    pairs = int(math.floor(factor * head_dim / 2.0))
    inv = np.zeros(head_dim // 2, dtype=np.float32)
    for j in range(min(pairs, head_dim // 2)):
        inv[j] = np.float32(1.0 / theta ** ((2.0 * j) / head_dim))  # f32 like Specula and HF
    return inv


def _read_config(directory):
    """(path, parsed JSON) of DIRECTORY/config.json; ConfigError naming the file otherwise."""
    path = os.path.join(directory, "config.json")
    try:
        with open(path) as f:
            return path, json.load(f)
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror}") from e
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not JSON ({e})") from e


class LayerSpec:
    def __init__(self, full, head_dim, kv_heads, ffn, owns_kv, kv_source, k_eq_v):
        self.full, self.head_dim, self.kv_heads, self.ffn = full, head_dim, kv_heads, ffn
        self.owns_kv, self.kv_source, self.k_eq_v = owns_kv, kv_source, k_eq_v


class TargetConfig:
    """The fields of a target's config.json that the forward pass needs, validated."""

    def __init__(self, root, path="config.json"):
        self.raw = root
        text, self.prefix = _text_config(root, path)
        self.text = text

        def need(key):
            v = text.get(key)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ConfigError(f"{path}: {key}: must be a positive integer (got {v!r})")
            return v

        self.hidden = need("hidden_size")
        self.layers_n = need("num_hidden_layers")
        self.heads = need("num_attention_heads")
        self.kv_heads = need("num_key_value_heads")
        self.global_kv_heads = text.get("num_global_key_value_heads") or self.kv_heads
        self.head_dim = text.get("head_dim", 256)
        self.global_head_dim = text.get("global_head_dim", 512)
        self.k_eq_v = bool(text.get("attention_k_eq_v", False))
        self.ffn = need("intermediate_size")
        self.double_wide = bool(text.get("use_double_wide_mlp", False))
        self.ple_dim = text.get("hidden_size_per_layer_input") or 0
        self.vocab = need("vocab_size")
        self.ple_vocab = text.get("vocab_size_per_layer_input") or self.vocab
        self.kv_shared = text.get("num_kv_shared_layers") or 0
        self.window = need("sliding_window")
        self.max_pos = need("max_position_embeddings")
        self.softcap = float(text.get("final_logit_softcapping") or 0.0)
        self.eps = float(text.get("rms_norm_eps", 1e-6))
        # Mixture of experts (26B-A4B): routed experts beside the always-on dense MLP.
        self.experts = self.top_k = self.moe_ffn = 0
        if text.get("enable_moe_block"):
            self.experts = need("num_experts")
            self.top_k = need("top_k_experts")
            self.moe_ffn = need("moe_intermediate_size")
            if self.top_k > self.experts:
                raise ConfigError(f"{path}: top_k_experts: must be at most num_experts = "
                                  f"{self.experts} (got {self.top_k})")
        if text.get("hidden_activation", "gelu_pytorch_tanh") != "gelu_pytorch_tanh":
            raise ConfigError(f"{path}: hidden_activation: only gelu_pytorch_tanh is supported")
        types = text.get("layer_types")
        if not isinstance(types, list) or len(types) != self.layers_n:
            raise ConfigError(f"{path}: layer_types: must list num_hidden_layers entries")
        self.multimodal_ids = [root[k] for k in ("image_token_id", "audio_token_id",
                                                 "video_token_id")
                               if isinstance(root.get(k), int) and root[k] >= 0]
        self.inv_sliding = _rope(text, "sliding_attention", self.head_dim, 1e4, "default", 1.0)
        self.inv_full = _rope(text, "full_attention", self.global_head_dim, 1e6, "proportional",
                              0.25)
        first_shared = self.layers_n - self.kv_shared
        self.layers = []
        for i, t in enumerate(types):
            if t not in ("sliding_attention", "full_attention"):
                raise ConfigError(f"{path}: layer_types: entry {i} is '{t}'")
            full = t == "full_attention"
            keqv = full and self.k_eq_v
            owns = i < first_shared
            src = i
            if not owns:
                src = max((j for j in range(first_shared) if (types[j] == t)), default=-1)
                if src < 0:
                    raise ConfigError(f"{path}: num_kv_shared_layers: shared layer {i} has no "
                                      "earlier KV-owning layer of its type")
            self.layers.append(LayerSpec(
                full=full, head_dim=self.global_head_dim if full else self.head_dim,
                kv_heads=self.global_kv_heads if keqv else self.kv_heads,
                ffn=self.ffn * (2 if (self.double_wide and not owns) else 1),
                owns_kv=owns, kv_source=src, k_eq_v=keqv))

    def last_kv_owner(self, full):
        for i in range(self.layers_n - 1, -1, -1):
            if self.layers[i].owns_kv and self.layers[i].full == full:
                return i
        return -1

    @staticmethod
    def load(directory):
        path, root = _read_config(directory)
        if not isinstance(root, dict):
            raise ConfigError(f"{path}: not a JSON object")
        return TargetConfig(root, path)


class AssistantConfig:
    """An MTP assistant's config.json (Gemma4AssistantForCausalLM layout)."""

    def __init__(self, root, path="config.json"):
        self.raw = root
        if root.get("model_type") not in ("gemma4_assistant", "gemma4_unified_assistant"):
            raise ConfigError(f"{path}: model_type: not a Gemma 4 assistant "
                              f"(got {root.get('model_type')!r})")
        text = root.get("text_config")
        if not isinstance(text, dict):
            raise ConfigError(f"{path}: text_config: missing")
        self.text = text
        self.backbone = root.get("backbone_hidden_size")
        self.hidden = text.get("hidden_size")
        self.heads = text.get("num_attention_heads")
        self.kv_heads = text.get("num_key_value_heads")
        self.global_kv_heads = text.get("num_global_key_value_heads") or self.kv_heads
        self.head_dim = text.get("head_dim", 256)
        self.global_head_dim = text.get("global_head_dim", 512)
        self.k_eq_v = bool(text.get("attention_k_eq_v", False))
        self.ffn = text.get("intermediate_size")
        self.window = text.get("sliding_window")
        self.vocab = text.get("vocab_size")
        self.eps = float(text.get("rms_norm_eps", 1e-6))
        for k in ("backbone", "hidden", "heads", "kv_heads", "ffn", "window", "vocab"):
            v = getattr(self, k)
            if not isinstance(v, int) or v <= 0:
                raise ConfigError(f"{path}: {k}: must be a positive integer (got {v!r})")
        types = text.get("layer_types") or []
        if not types or any(t not in ("sliding_attention", "full_attention") for t in types):
            raise ConfigError(f"{path}: text_config.layer_types: missing or unknown entries")
        self.full = [t == "full_attention" for t in types]
        self.ordered = bool(root.get("use_ordered_embeddings", False))
        self.centroids = root.get("num_centroids", 2048)
        self.centroid_top_k = root.get("centroid_intermediate_top_k", 32)
        self.inv_sliding = _rope(text, "sliding_attention", self.head_dim, 1e4, "default", 1.0)
        self.inv_full = _rope(text, "full_attention", self.global_head_dim, 1e6, "proportional",
                              0.25)

    def layer_head_dim(self, l):
        return self.global_head_dim if self.full[l] else self.head_dim

    def layer_kv_heads(self, l):
        return self.global_kv_heads if (self.full[l] and self.k_eq_v) else self.kv_heads

    def check_fits(self, target, path="config.json"):
        """Raises ConfigError naming the mismatch when this assistant cannot read `target`."""
        if self.backbone != target.hidden:
            raise ConfigError(f"{path}: backbone_hidden_size {self.backbone} != target "
                              f"hidden_size {target.hidden}")
        if self.vocab != target.vocab:
            raise ConfigError(f"{path}: vocab_size {self.vocab} != target vocab_size "
                              f"{target.vocab}")
        for l, full in enumerate(self.full):
            src = target.last_kv_owner(full)
            kind = "full" if full else "sliding"
            if src < 0:
                raise ConfigError(f"{path}: layer {l} is {kind} but the target has no KV-owning "
                                  f"{kind} layer")
            s = target.layers[src]
            if self.layer_head_dim(l) != s.head_dim or self.layer_kv_heads(l) != s.kv_heads:
                raise ConfigError(f"{path}: {kind} layer {l}: head dim {self.layer_head_dim(l)} "
                                  f"x {self.layer_kv_heads(l)} KV heads != target layer {src}: "
                                  f"{s.head_dim} x {s.kv_heads}")
        if self.window > target.window:
            raise ConfigError(f"{path}: sliding_window {self.window} exceeds the target's "
                              f"{target.window}")

    @staticmethod
    def load(directory):
        path, root = _read_config(directory)
        return AssistantConfig(root, path)


# ------------------------------------------------------------------------------------------------
# Vocabulary subsets


class VocabMap:
    """Maps full vocabulary ids to embedding rows. `kept`: the ids with rows of their own, in row
    order; with `other`, one more row (the last) stands for every id not kept."""

    def __init__(self, vocab, kept=None, other=False):
        self.vocab = vocab
        self.kept = np.arange(vocab, dtype=np.int64) if kept is None else np.asarray(kept,
                                                                                       np.int64)
        self.other = other
        self.rows = len(self.kept) + (1 if other else 0)
        self.n_other = vocab - len(self.kept)
        if not other and self.n_other != 0:
            raise ValueError("a vocabulary subset needs the 'other' row")
        self._row_of = np.full(vocab, self.rows - 1 if other else -1, dtype=np.int64)
        self._row_of[self.kept] = np.arange(len(self.kept))

    def identity(self):
        return not self.other

    def row_of(self, ids):
        return self._row_of[np.asarray(ids, dtype=np.int64)]

    def id_of(self, rows):
        """Full ids of rows (the other row maps to -1)."""
        rows = np.asarray(rows, dtype=np.int64)
        ids = np.full(rows.shape, -1, dtype=np.int64)
        own = rows < len(self.kept)
        ids[own] = self.kept[rows[own]]
        return ids

    def log_count_bias(self):
        """[rows]: log of how many ids each row stands for (0 for kept ids)."""
        b = torch.zeros(self.rows)
        if self.other:
            b[-1] = math.log(self.n_other)
        return b

    def expand(self, table):
        """[rows, ...] -> [vocab, ...]: every id not kept gets the other row."""
        table = np.asarray(table)
        if self.identity():
            return table
        out = np.empty((self.vocab,) + table.shape[1:], dtype=table.dtype)
        out[:] = table[-1]
        out[self.kept] = table[:len(self.kept)]
        return out

    def to_json(self):
        return {"vocab": self.vocab, "kept": self.kept.tolist(), "other": self.other}

    @staticmethod
    def from_json(j):
        return VocabMap(j["vocab"], j["kept"], j["other"])


# ------------------------------------------------------------------------------------------------
# Shared pieces


def rms_norm(x, w, eps):
    """x * (mean(x^2) + eps)^-1/2 * w over the last dim (w None: no weight). Plain w (Gemma 4)."""
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return y * w if w is not None else y


def gelu(x):
    return F.gelu(x, approximate="tanh")


def rope_tables(inv_freq, pos):
    """cos, sin [len(pos), d/2] for positions `pos` (angle in f32, cos/sin in double)."""
    ang = pos.to(torch.float32)[:, None] * inv_freq[None, :]
    return ang.double().cos().float(), ang.double().sin().float()


def apply_rope(x, cos, sin):
    """Rotate-half RoPE on [..., T, d] with cos/sin [T, d/2] (pairs j, j + d/2)."""
    h = x.shape[-1] // 2
    a, b = x[..., :h], x[..., h:]
    return torch.cat([a * cos - b * sin, b * cos + a * sin], dim=-1)


def grouped_attention(q, k, v, masked):
    """softmax(q k^T) v with scale 1 (q and k are RMS-normalised) and GQA: q [B, nh, Q, hd],
    k/v [B, nkv, T, hd], masked: broadcastable to [B, nkv, group, Q, T] (True: not visible).
    Query head h reads KV head h // (nh / nkv); the heads of a group share one matrix product.
    A query that sees no key reads nothing (zeros), as in Specula."""
    B, nh, Q, hd = q.shape
    nkv, T = k.shape[1], k.shape[2]
    group = nh // nkv
    qg = q.reshape(B, nkv, group * Q, hd)
    s = (qg @ k.transpose(-1, -2)).view(B, nkv, group, Q, T)
    s = s.masked_fill(masked, float("-inf"))
    prob = torch.nan_to_num(torch.softmax(s, dim=-1), nan=0.0)
    return (prob.view(B, nkv, group * Q, T) @ v).view(B, nh, Q, hd)


class _Weights(torch.nn.Module):
    """Parameters under their Hugging Face names (dots are not allowed in module names)."""

    def __init__(self):
        super().__init__()
        self.p = torch.nn.ParameterDict()

    def add(self, name, value, trainable=True):
        t = torch.as_tensor(np.ascontiguousarray(value), dtype=torch.float32)
        self.p[name.replace(".", "__")] = torch.nn.Parameter(t, requires_grad=trainable)

    def __call__(self, name):
        return self.p[name.replace(".", "__")]

    def has(self, name):
        return name.replace(".", "__") in self.p

    def named(self):
        return {k.replace("__", "."): v for k, v in self.p.items()}


def _dtype_of(tensors_dtype):
    return tensors_dtype if tensors_dtype in ("BF16", "F16", "F32") else "BF16"


def _round_scalar(value, dtype):
    return float(st.round_to(np.array([value], np.float32), dtype)[0])


# ------------------------------------------------------------------------------------------------
# Target


class Target(torch.nn.Module):
    """The Gemma 4 text decoder. Inputs are embedding rows (`vmap.row_of(ids)`)."""

    def __init__(self, cfg, tensors, vmap=None, dtype="BF16"):
        super().__init__()
        self.cfg = cfg
        self.vmap = vmap or VocabMap(cfg.vocab)
        self.dtype = dtype  # stored dtype of the weights (for the embedding scale's rounding)
        self.w = _Weights()
        for name, value in tensors.items():
            self.w.add(name, value)
        self.embed_scale = _round_scalar(math.sqrt(cfg.hidden), dtype)
        self.ple_scale = _round_scalar(math.sqrt(cfg.ple_dim), dtype) if cfg.ple_dim else 0.0
        self.register_buffer("inv_sliding", torch.from_numpy(cfg.inv_sliding), persistent=False)
        self.register_buffer("inv_full", torch.from_numpy(cfg.inv_full), persistent=False)
        # Per-layer-embedding row of each input row: multimodal placeholders and ids beyond the
        # per-layer vocabulary read the pad row (id 0).
        ids = self.vmap.id_of(np.arange(self.vmap.rows))
        pad_row = int(self.vmap.row_of([0])[0])
        ple_row = np.arange(self.vmap.rows)
        bad = np.isin(ids, cfg.multimodal_ids) | (ids >= cfg.ple_vocab)
        ple_row[bad] = pad_row
        self.register_buffer("ple_row", torch.from_numpy(ple_row), persistent=False)

    # -- loading and saving

    @staticmethod
    def expected_shapes(cfg, rows):
        """{name: shape} of every tensor the forward pass reads (names without prefix)."""
        H, P, L = cfg.hidden, cfg.ple_dim, cfg.layers_n
        s = {"embed_tokens.weight": (rows, H), "norm.weight": (H,)}
        if P:
            s["embed_tokens_per_layer.weight"] = (rows, L * P)
            s["per_layer_model_projection.weight"] = (L * P, H)
            s["per_layer_projection_norm.weight"] = (P,)
        for i, ls in enumerate(cfg.layers):
            p = f"layers.{i}."
            for n in ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                      "post_feedforward_layernorm"):
                s[p + n + ".weight"] = (H,)
            s[p + "layer_scalar"] = (1,)
            hd, qd, kvd = ls.head_dim, cfg.heads * ls.head_dim, ls.kv_heads * ls.head_dim
            s[p + "self_attn.q_proj.weight"] = (qd, H)
            s[p + "self_attn.q_norm.weight"] = (hd,)
            s[p + "self_attn.o_proj.weight"] = (H, qd)
            if ls.owns_kv:
                s[p + "self_attn.k_proj.weight"] = (kvd, H)
                s[p + "self_attn.k_norm.weight"] = (hd,)
                if not ls.k_eq_v:
                    s[p + "self_attn.v_proj.weight"] = (kvd, H)
            s[p + "mlp.gate_proj.weight"] = (ls.ffn, H)
            s[p + "mlp.up_proj.weight"] = (ls.ffn, H)
            s[p + "mlp.down_proj.weight"] = (H, ls.ffn)
            if cfg.experts:
                E, F = cfg.experts, cfg.moe_ffn
                for n in ("pre_feedforward_layernorm_2", "post_feedforward_layernorm_1",
                          "post_feedforward_layernorm_2"):
                    s[p + n + ".weight"] = (H,)
                s[p + "router.proj.weight"] = (E, H)
                s[p + "router.scale"] = (H,)
                s[p + "router.per_expert_scale"] = (E,)
                s[p + "experts.gate_up_proj"] = (E, 2 * F, H)
                s[p + "experts.down_proj"] = (E, H, F)
            if P:
                s[p + "per_layer_input_gate.weight"] = (P, H)
                s[p + "per_layer_projection.weight"] = (H, P)
                s[p + "post_per_layer_input_norm.weight"] = (H,)
        return s

    @staticmethod
    def load(directory):
        """Loads a checkpoint directory (full vocabulary). Raises ConfigError/CheckpointError."""
        cfg = TargetConfig.load(directory)
        raw = st.read_dir(directory)
        prefix = cfg.prefix
        if prefix + "embed_tokens.weight" not in raw:
            for p in ("model.language_model.", "model."):
                if p + "embed_tokens.weight" in raw:
                    prefix = p
        dtype = "BF16"
        for fn in os.listdir(directory):
            if fn.endswith(".safetensors"):
                hdr, _, _ = st.read_header(os.path.join(directory, fn))
                for name, t in hdr.items():
                    if name.endswith("embed_tokens.weight"):
                        dtype = _dtype_of(t["dtype"])
        tensors = {}
        for name, shape in Target.expected_shapes(cfg, cfg.vocab).items():
            a = raw.get(prefix + name)
            if a is None:
                raise st.CheckpointError(f"{directory}: missing tensor '{prefix + name}'")
            if tuple(a.shape) != tuple(shape):
                raise st.CheckpointError(f"{directory}: tensor '{prefix + name}' has shape "
                                         f"{list(a.shape)}, expected {list(shape)}")
            tensors[name] = a
        if "lm_head.weight" in raw and not np.array_equal(raw["lm_head.weight"],
                                                          tensors["embed_tokens.weight"]):
            raise st.CheckpointError(f"{directory}: an untied lm_head.weight is not supported")
        return Target(cfg, tensors, dtype=dtype)

    def full_tensors(self):
        """{HF name: np.float32 array} over the full vocabulary (expanded)."""
        out = {}
        for name, p in self.w.named().items():
            a = p.detach().cpu().numpy()
            if name in ("embed_tokens.weight", "embed_tokens_per_layer.weight"):
                a = self.vmap.expand(a)
            out[self.cfg.prefix + name] = a
        return out

    def save(self, directory, tokenizer_json=None, dtype=None):
        """Writes config.json, generation_config.json, model.safetensors (and tokenizer.json)."""
        os.makedirs(directory, exist_ok=True)
        dtype = dtype or self.dtype
        with open(os.path.join(directory, "config.json"), "w") as f:
            json.dump(self.cfg.raw, f, indent=2)
        gen = {"bos_token_id": 2, "eos_token_id": [1, 106], "pad_token_id": 0, "do_sample": False}
        with open(os.path.join(directory, "generation_config.json"), "w") as f:
            json.dump(gen, f, indent=2)
        if tokenizer_json:
            shutil.copyfile(tokenizer_json, os.path.join(directory, "tokenizer.json"))
        tensors = {n: (a, dtype) for n, a in self.full_tensors().items()}
        st.write(os.path.join(directory, "model.safetensors"), tensors)

    # -- forward

    def embed(self, rows):
        return self.w("embed_tokens.weight")[rows] * self.embed_scale

    def forward(self, rows, logits=True):
        """rows [B, T] from position 0. Returns a dict: hidden [B, T, H] (post-norm), logits
        [B, T, rows] (softcapped; when `logits`), kv {"sliding"|"full": (k, v) [B, nkv, T, hd]}:
        the keys/values of the last KV-owning layer of each type (what an assistant reads)."""
        c, w = self.cfg, self.w
        B, T = rows.shape
        H, P, L = c.hidden, c.ple_dim, c.layers_n
        x = self.embed(rows)
        if P:
            tok = w("embed_tokens_per_layer.weight")[self.ple_row[rows]] * self.ple_scale
            ctx = (x @ w("per_layer_model_projection.weight").t()) * (1.0 / math.sqrt(H))
            ctx = rms_norm(ctx.view(B, T, L, P), w("per_layer_projection_norm.weight"), c.eps)
            ple = (ctx + tok.view(B, T, L, P)) * (1.0 / math.sqrt(2.0))
        pos = torch.arange(T, device=rows.device)
        cs_s, sn_s = rope_tables(self.inv_sliding, pos)
        cs_f, sn_f = rope_tables(self.inv_full, pos)
        causal = pos[None, :] <= pos[:, None]
        sliding = causal & (pos[:, None] - pos[None, :] < c.window)
        kv = {}
        for i, ls in enumerate(c.layers):
            p = f"layers.{i}."
            hd, nh = ls.head_dim, c.heads
            cos, sin = (cs_f, sn_f) if ls.full else (cs_s, sn_s)
            a = rms_norm(x, w(p + "input_layernorm.weight"), c.eps)
            q = (a @ w(p + "self_attn.q_proj.weight").t()).view(B, T, nh, hd).transpose(1, 2)
            q = apply_rope(rms_norm(q, w(p + "self_attn.q_norm.weight"), c.eps), cos, sin)
            if ls.owns_kv:
                nkv = ls.kv_heads
                kr = (a @ w(p + "self_attn.k_proj.weight").t()).view(B, T, nkv, hd).transpose(1, 2)
                vr = kr if ls.k_eq_v else (a @ w(p + "self_attn.v_proj.weight").t()).view(
                    B, T, nkv, hd).transpose(1, 2)
                k = apply_rope(rms_norm(kr, w(p + "self_attn.k_norm.weight"), c.eps), cos, sin)
                v = rms_norm(vr, None, c.eps)
                kv[i] = (k, v)
            else:
                k, v = kv[ls.kv_source]
            o = grouped_attention(q, k, v, ~(causal if ls.full else sliding))  # [B, nh, T, hd]
            o = o.transpose(1, 2).reshape(B, T, nh * hd) @ w(p + "self_attn.o_proj.weight").t()
            x = x + rms_norm(o, w(p + "post_attention_layernorm.weight"), c.eps)
            y = rms_norm(x, w(p + "pre_feedforward_layernorm.weight"), c.eps)
            m = gelu(y @ w(p + "mlp.gate_proj.weight").t()) * (y @ w(p + "mlp.up_proj.weight").t())
            m = m @ w(p + "mlp.down_proj.weight").t()
            if c.experts:
                m = rms_norm(m, w(p + "post_feedforward_layernorm_1.weight"), c.eps)
                m = m + rms_norm(self.experts(p, x), w(p + "post_feedforward_layernorm_2.weight"),
                                 c.eps)
            x = x + rms_norm(m, w(p + "post_feedforward_layernorm.weight"), c.eps)
            if P:
                g = gelu(x @ w(p + "per_layer_input_gate.weight").t()) * ple[:, :, i, :]
                g = g @ w(p + "per_layer_projection.weight").t()
                x = x + rms_norm(g, w(p + "post_per_layer_input_norm.weight"), c.eps)
            x = x * w(p + "layer_scalar")[0]
        hidden = rms_norm(x, w("norm.weight"), c.eps)
        out = {"hidden": hidden,
               "kv": {"sliding": kv.get(c.last_kv_owner(False)),
                      "full": kv.get(c.last_kv_owner(True))}}
        if logits:
            out["logits"] = self.head(hidden)
        return out

    def experts(self, p, r):
        """The routed experts of layer prefix `p` on the post-attention residual r [B, T, H]:
        router softmax over all experts, top-k renormalised and scaled per expert, each expert a
        GELU-gated MLP on the second pre-norm. Ties in the top-k go to the lower index, as in
        Specula (a stable sort on the negated probabilities)."""
        c, w = self.cfg, self.w
        F = c.moe_ffn
        z = rms_norm(r, None, c.eps) * w(p + "router.scale") * (1.0 / math.sqrt(c.hidden))
        prob = torch.softmax(z @ w(p + "router.proj.weight").t(), dim=-1)  # [B, T, E]
        order = torch.sort(-prob, dim=-1, stable=True).indices[..., :c.top_k]  # [B, T, k]
        top = torch.gather(prob, -1, order)
        weight = top / top.sum(-1, keepdim=True) * w(p + "router.per_expert_scale")[order]
        xe = rms_norm(r, w(p + "pre_feedforward_layernorm_2.weight"), c.eps)
        flat_x, flat_e = xe.reshape(-1, c.hidden), order.reshape(-1, c.top_k)
        flat_w = weight.reshape(-1, c.top_k)
        y = torch.zeros_like(flat_x)
        gate_up, down = w(p + "experts.gate_up_proj"), w(p + "experts.down_proj")
        for e in torch.unique(flat_e).tolist():
            rows, rank = torch.nonzero(flat_e == e, as_tuple=True)
            hid = flat_x[rows] @ gate_up[e].t()  # [n, 2F]: gate, then up
            out = (gelu(hid[:, :F]) * hid[:, F:]) @ down[e].t()
            y = y.index_add(0, rows, out * flat_w[rows, rank][:, None])
        return y.view_as(r)

    def head(self, hidden):
        lg = hidden @ self.w("embed_tokens.weight").t()
        if self.cfg.softcap > 0:
            lg = self.cfg.softcap * torch.tanh(lg * (1.0 / self.cfg.softcap))
        return lg


# ------------------------------------------------------------------------------------------------
# Assistant


class Assistant(torch.nn.Module):
    """The MTP drafter (Gemma4AssistantForCausalLM). Its own head rows follow `vmap` (the
    target's map when the vocabulary is a subset). The centroid head is applied by
    `centroid_candidates`."""

    def __init__(self, cfg, tensors, vmap=None, dtype="BF16", ordering=None):
        super().__init__()
        self.cfg = cfg
        self.vmap = vmap or VocabMap(cfg.vocab)
        self.dtype = dtype
        self.w = _Weights()
        for name, value in tensors.items():
            self.w.add(name, value)
        self.ordering = None if ordering is None else np.asarray(ordering, np.int64)
        self.register_buffer("inv_sliding", torch.from_numpy(cfg.inv_sliding), persistent=False)
        self.register_buffer("inv_full", torch.from_numpy(cfg.inv_full), persistent=False)

    @staticmethod
    def expected_shapes(cfg, rows):
        Hd, Hb = cfg.hidden, cfg.backbone
        s = {"pre_projection.weight": (Hd, 2 * Hb), "post_projection.weight": (Hb, Hd),
             "model.embed_tokens.weight": (rows, Hd), "model.norm.weight": (Hd,)}
        for l in range(len(cfg.full)):
            p = f"model.layers.{l}."
            hd = cfg.layer_head_dim(l)
            for n in ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                      "post_feedforward_layernorm"):
                s[p + n + ".weight"] = (Hd,)
            s[p + "layer_scalar"] = (1,)
            s[p + "self_attn.q_proj.weight"] = (cfg.heads * hd, Hd)
            s[p + "self_attn.q_norm.weight"] = (hd,)
            s[p + "self_attn.o_proj.weight"] = (Hd, cfg.heads * hd)
            s[p + "mlp.gate_proj.weight"] = (cfg.ffn, Hd)
            s[p + "mlp.up_proj.weight"] = (cfg.ffn, Hd)
            s[p + "mlp.down_proj.weight"] = (Hd, cfg.ffn)
        if cfg.ordered:
            s["masked_embedding.centroids.weight"] = (cfg.centroids, Hd)
        return s

    @staticmethod
    def load(directory, target_cfg=None):
        cfg = AssistantConfig.load(directory)
        if target_cfg is not None:
            cfg.check_fits(target_cfg, os.path.join(directory, "config.json"))
        raw = st.read_dir(directory)
        tensors = {}
        for name, shape in Assistant.expected_shapes(cfg, cfg.vocab).items():
            a = raw.get(name)
            if a is None:
                raise st.CheckpointError(f"{directory}: missing tensor '{name}'")
            if tuple(a.shape) != tuple(shape):
                raise st.CheckpointError(f"{directory}: tensor '{name}' has shape "
                                         f"{list(a.shape)}, expected {list(shape)}")
            tensors[name] = a
        ordering = None
        if cfg.ordered:
            ordering = raw.get("masked_embedding.token_ordering")
            if ordering is None or sorted(ordering.tolist()) != list(range(cfg.vocab)):
                raise st.CheckpointError(f"{directory}: masked_embedding.token_ordering must be "
                                         "a permutation of the vocabulary")
        hdr, _, _ = st.read_header(os.path.join(directory, "model.safetensors"))
        dtype = _dtype_of(hdr["pre_projection.weight"]["dtype"])
        return Assistant(cfg, tensors, dtype=dtype, ordering=ordering)

    def full_tensors(self):
        out = {}
        for name, p in self.w.named().items():
            a = p.detach().cpu().numpy()
            if name == "model.embed_tokens.weight":
                a = self.vmap.expand(a)
            out[name] = a
        return out

    def save(self, directory, num_assistant_tokens=None, dtype=None):
        os.makedirs(directory, exist_ok=True)
        dtype = dtype or self.dtype
        with open(os.path.join(directory, "config.json"), "w") as f:
            json.dump(self.cfg.raw, f, indent=2)
        gen = {"bos_token_id": 2, "eos_token_id": [1, 106], "pad_token_id": 0}
        if num_assistant_tokens:
            gen["num_assistant_tokens"] = num_assistant_tokens
        with open(os.path.join(directory, "generation_config.json"), "w") as f:
            json.dump(gen, f, indent=2)
        tensors = {n: (a, dtype) for n, a in self.full_tensors().items()}
        if self.cfg.ordered:
            tensors["masked_embedding.token_ordering"] = (self.ordering, "I64")
        st.write(os.path.join(directory, "model.safetensors"), tensors)

    def step(self, target_embed, h_in, pos, kv, key_len=None):
        """One draft step for B sequences x Q queries.

        target_embed [B, Q, Hb]: the target's scaled embedding of each query's input token;
        h_in [B, Q, Hb]; pos [B, Q] (long): RoPE position P of each query, which reads keys
        0..P-1 of its sequence (a window of the assistant's width on sliding layers);
        kv: the target's {"sliding"|"full": (k, v) [B, nkv, T, hd]}.
        Returns (hidden [B, Q, Hd] post-norm draft hidden, h_out [B, Q, Hb])."""
        c, w = self.cfg, self.w
        B, Q, _ = h_in.shape
        z = torch.cat([target_embed, h_in], dim=-1) @ w("pre_projection.weight").t()
        flat_pos = pos.reshape(-1)
        for l, full in enumerate(c.full):
            p = f"model.layers.{l}."
            hd, nh = c.layer_head_dim(l), c.heads
            k, v = kv["full" if full else "sliding"]
            T = k.shape[2]
            keys = torch.arange(T, device=pos.device)
            visible = keys[None, None, :] < pos[:, :, None]  # [B, Q, T]: keys 0..P-1
            if not full:
                visible = visible & (keys[None, None, :] >= pos[:, :, None] - c.window + 1)
            a = rms_norm(z, w(p + "input_layernorm.weight"), c.eps)
            q = (a @ w(p + "self_attn.q_proj.weight").t()).view(B, Q, nh, hd)
            q = rms_norm(q, w(p + "self_attn.q_norm.weight"), c.eps)
            cos, sin = rope_tables(self.inv_full if full else self.inv_sliding, flat_pos)
            q = apply_rope(q.reshape(B * Q, nh, hd).transpose(0, 1), cos, sin)  # [nh, BQ, hd]
            q = q.transpose(0, 1).reshape(B, Q, nh, hd).transpose(1, 2)  # [B, nh, Q, hd]
            o = grouped_attention(q, k, v, ~visible[:, None, None])  # [B, nh, Q, hd]
            o = o.transpose(1, 2).reshape(B, Q, nh * hd) @ w(p + "self_attn.o_proj.weight").t()
            z = z + rms_norm(o, w(p + "post_attention_layernorm.weight"), c.eps)
            y = rms_norm(z, w(p + "pre_feedforward_layernorm.weight"), c.eps)
            m = gelu(y @ w(p + "mlp.gate_proj.weight").t()) * (y @ w(p + "mlp.up_proj.weight").t())
            m = m @ w(p + "mlp.down_proj.weight").t()
            z = (z + rms_norm(m, w(p + "post_feedforward_layernorm.weight"), c.eps)) \
                * w(p + "layer_scalar")[0]
        hidden = rms_norm(z, w("model.norm.weight"), c.eps)
        return hidden, hidden @ w("post_projection.weight").t()

    def dense_logits(self, hidden):
        """[..., rows]: the tied head over the assistant's rows (no softcap)."""
        return hidden @ self.w("model.embed_tokens.weight").t()

    def centroid_scores(self, hidden):
        return hidden @ self.w("masked_embedding.centroids.weight").t()

    def greedy_token(self, hidden):
        """(token, margin, best): the draft token Specula picks for one hidden [Hd] (a full
        vocabulary id), the gap between the best and second-best score, and the best score."""
        if not self.cfg.ordered:
            lg = self.dense_logits(hidden)
            top = torch.topk(lg, 2)
            token = int(self.vmap.id_of([int(top.indices[0])])[0])
        else:
            cand, lg = self.centroid_candidates(hidden)
            top = torch.topk(lg, 2)
            token = int(cand[int(top.indices[0])])
        return token, float(top.values[0] - top.values[1]), float(top.values[0])

    def centroid_candidates(self, hidden):
        """Centroid head for one hidden [Hd]: (candidate ids, their logits); clusters ranked by
        score with ties to the lower index, as Specula does."""
        c = self.cfg
        cs = self.centroid_scores(hidden)
        order = torch.sort(cs, descending=True, stable=True).indices[:c.centroid_top_k]
        per = c.vocab // c.centroids
        cand = np.concatenate([self.ordering[int(k) * per:(int(k) + 1) * per] for k in order])
        rows = torch.from_numpy(self.vmap.row_of(cand))
        return cand, self.w("model.embed_tokens.weight")[rows] @ hidden
