"""Compact storage of a trained pair, and its expansion to standard checkpoint directories.

A checkpoint over the 262,144-token vocabulary is mostly embedding rows that a small corpus never
uses: every such row equals one shared "other" row (see gemma4_torch.VocabMap). A pack keeps
only the used rows, and stores every matrix as 8-bit codes with one float16 scale per 32 values
(GGUF's Q8_0 layout, ~8.5 bits per weight); vectors stay float32. `expand` rebuilds the full
Hugging Face directories; the values it writes (bf16 of scale * code) are exactly the ones the
tools trained against, since `quantize_model` puts them into the PyTorch model before a pack is
written.

`python3 tools/distill/pack.py expand PACK.npz OUT_DIR [--assistant DIR] --tokenizer FILE` needs
only numpy; `pack.py create PACK.npz --target DIR --assistant DIR` packs a trained pair.
"""
import argparse
import json
import os
import sys

import numpy as np

import safetensors_io as st

BLOCK = 32


def q8(a, dtype="BF16"):
    """[..., n] float32 -> (codes int8 [..., n'], scales f16 [..., n'/32]), n' = n rounded up.

    Idempotent on what it produces: for values that are already round_to(scale * code) of some
    block scale (a stored value read back), it finds that scale again (among the float16
    neighbours of max|x| / 127) so that packing a packed model changes nothing; other values get
    the nearest codes under scale = max|x| / 127, whose largest code is then always 127."""
    a = np.asarray(a, np.float32)
    n = a.shape[-1]
    pad = (-n) % BLOCK
    if pad:
        a = np.concatenate([a, np.zeros(a.shape[:-1] + (pad,), np.float32)], axis=-1)
    blocks = a.reshape(-1, BLOCK)
    amax = np.abs(blocks).max(-1)
    scale = (amax / 127.0).astype(np.float16)
    codes = _codes(blocks, scale)
    # Stored values: search the scale that reproduces them exactly.
    exact = np.all(st.round_to(codes * scale.astype(np.float32)[:, None], dtype) == blocks, -1)
    bits = scale.view(np.uint16).astype(np.int32)
    for step in (1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 6, -6, 7, -7, 8, -8):
        todo = ~exact & (amax > 0)
        if not todo.any():
            break
        cand = np.clip(bits[todo] + step, 1, 0x7BFF).astype(np.uint16).view(np.float16)
        c = _codes(blocks[todo], cand)
        ok = np.all(st.round_to(c * cand.astype(np.float32)[:, None], dtype) == blocks[todo], -1)
        idx = np.nonzero(todo)[0][ok]
        scale[idx], codes[idx], exact[idx] = cand[ok], c[ok], True
    return codes.reshape(a.shape), scale.reshape(a.shape[:-1] + (-1,))


def _codes(blocks, scale):
    s32 = scale.astype(np.float32)[:, None]
    c = np.where(s32 > 0, np.rint(blocks / np.maximum(s32, 1e-30)), 0)
    return np.clip(c, -127, 127).astype(np.int8)


def dq8(codes, scales, n):
    """The float32 values of q8 codes, cut back to the original last dim n."""
    blocks = codes.reshape(codes.shape[:-1] + (-1, BLOCK)).astype(np.float32)
    return (blocks * scales.astype(np.float32)[..., None]).reshape(codes.shape)[..., :n]


def stored_values(a, dtype="BF16"):
    """What a tensor becomes through the pack and the expanded checkpoint: q8 for matrices, then
    rounded to the checkpoint dtype; vectors only rounded."""
    a = np.asarray(a, np.float32)
    if a.ndim >= 2:
        codes, scales = q8(a, dtype)
        a = dq8(codes, scales, a.shape[-1])
    return st.round_to(a, dtype)


def quantize_model(module):
    """Replaces every weight of a gemma4_torch model by its stored value (in place)."""
    import torch
    with torch.no_grad():
        for p in module.w.p.values():
            p.copy_(torch.from_numpy(stored_values(p.detach().cpu().numpy(), module.dtype)))


def pack_tensors(prefix, module, arrays):
    """Adds a model's compact tensors to `arrays` (name -> array) under `prefix/`."""
    for name, p in module.w.named().items():
        a = p.detach().cpu().numpy().astype(np.float32)
        if a.ndim >= 2:
            codes, scales = q8(a, module.dtype)
            arrays[f"{prefix}/{name}:q8"] = codes
            arrays[f"{prefix}/{name}:scale"] = scales
            arrays[f"{prefix}/{name}:cols"] = np.array([a.shape[-1]], np.int64)
        else:
            arrays[f"{prefix}/{name}"] = a


def save(path, target, assistant=None, meta=None):
    """Writes a pack: the target (and assistant) weights, their configs and vocabulary maps."""
    arrays = {}
    pack_tensors("target", target, arrays)
    info = {"target_config": target.cfg.raw, "vocab": target.vmap.to_json(),
            "dtype": target.dtype, "meta": meta or {}}
    if assistant is not None:
        pack_tensors("assistant", assistant, arrays)
        info["assistant_config"] = assistant.cfg.raw
        info["assistant_vocab"] = assistant.vmap.to_json()
        if assistant.ordering is not None:
            arrays["assistant/ordering"] = assistant.ordering.astype(np.int64)
    arrays["info"] = np.frombuffer(json.dumps(info).encode(), np.uint8)
    tmp = path + ".tmp.npz"
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


def shared_row_map(table):
    """A VocabMap for a full-vocabulary table whose unused rows all equal one row: the ids whose
    rows differ from the most common row are kept."""
    import gemma4_torch as g
    rows = np.ascontiguousarray(table, np.float32)
    view = rows.view(np.dtype((np.void, rows.shape[1] * 4)))[:, 0]
    uniq, first, counts = np.unique(view, return_index=True, return_counts=True)
    common = rows[first[np.argmax(counts)]]
    kept = np.nonzero(np.any(rows != common, axis=1))[0]
    if counts.max() < 2:
        return g.VocabMap(len(rows))
    return g.VocabMap(len(rows), kept, other=True)


def create(path, target_dir, assistant_dir, meta=None):
    """Packs an existing pair. Weights are stored as q8: exact for pairs written by these tools
    (train_target and distill --pack round every weight to its stored value first)."""
    import gemma4_torch as g
    import torch
    target = g.Target.load(target_dir)
    assistant = g.Assistant.load(assistant_dir, target.cfg)

    def compact(model, names):
        vmap = shared_row_map(model.w(names[0]).detach().numpy())
        if not vmap.identity():
            keep = np.concatenate([vmap.kept, [int(np.setdiff1d(np.arange(vmap.vocab),
                                                                 vmap.kept)[0])]])
            for n in names:
                model.w.p[n.replace(".", "__")] = torch.nn.Parameter(
                    model.w(n).detach()[torch.from_numpy(keep)], requires_grad=False)
        model.vmap = vmap

    names = ["embed_tokens.weight"] + (["embed_tokens_per_layer.weight"]
                                       if target.cfg.ple_dim else [])
    compact(target, names)
    compact(assistant, ["model.embed_tokens.weight"])
    save(path, target, assistant, meta)


def _tensors(z, prefix):
    out = {}
    for key in z.files:
        if not key.startswith(prefix + "/"):
            continue
        name = key[len(prefix) + 1:]
        if name.endswith(":q8"):
            base = name[:-3]
            cols = int(z[f"{prefix}/{base}:cols"][0])
            out[base] = dq8(z[key], z[f"{prefix}/{base}:scale"], cols)
        elif ":" not in name and name != "ordering":
            out[name] = z[key]
    return out


def _expand_vocab(table, vocab):
    kept = np.asarray(vocab["kept"], np.int64)
    if not vocab["other"]:
        return table
    out = np.empty((vocab["vocab"],) + table.shape[1:], np.float32)
    out[:] = table[-1]
    out[kept] = table[:len(kept)]
    return out


def _write_json(path, value):
    with open(path, "w") as f:
        json.dump(value, f, indent=2)


def expand(pack_path, out_dir, tokenizer_json, assistant_dir=None):
    """Writes the target to out_dir (and the assistant to assistant_dir) in the HF layout."""
    z = np.load(pack_path)
    info = json.loads(bytes(z["info"]).decode())
    dtype, vocab = info["dtype"], info["vocab"]
    cfg = info["target_config"]
    prefix = "model.language_model." if cfg.get("model_type") in ("gemma4", "gemma4_unified") \
        else "model."
    tensors = {}
    for name, a in _tensors(z, "target").items():
        if name in ("embed_tokens.weight", "embed_tokens_per_layer.weight"):
            a = _expand_vocab(a, vocab)
        tensors[prefix + name] = (a, dtype)
    os.makedirs(out_dir, exist_ok=True)
    _write_json(os.path.join(out_dir, "config.json"), cfg)
    _write_json(os.path.join(out_dir, "generation_config.json"),
                {"bos_token_id": 2, "eos_token_id": [1, 106], "pad_token_id": 0,
                 "do_sample": False})
    with open(tokenizer_json, "rb") as src, open(os.path.join(out_dir, "tokenizer.json"),
                                                 "wb") as dst:
        dst.write(src.read())
    st.write(os.path.join(out_dir, "model.safetensors"), tensors)
    if assistant_dir and "assistant_config" in info:
        tensors = {}
        for name, a in _tensors(z, "assistant").items():
            if name == "model.embed_tokens.weight":
                a = _expand_vocab(a, info.get("assistant_vocab", vocab))
            tensors[name] = (a, dtype)
        if "assistant/ordering" in z.files:
            tensors["masked_embedding.token_ordering"] = (z["assistant/ordering"], "I64")
        os.makedirs(assistant_dir, exist_ok=True)
        _write_json(os.path.join(assistant_dir, "config.json"), info["assistant_config"])
        gen = {"bos_token_id": 2, "eos_token_id": [1, 106], "pad_token_id": 0}
        k = info["meta"].get("num_assistant_tokens")
        if k:
            gen["num_assistant_tokens"] = k
        _write_json(os.path.join(assistant_dir, "generation_config.json"), gen)
        st.write(os.path.join(assistant_dir, "model.safetensors"), tensors)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("expand", help="write the HF checkpoint directories of a pack")
    e.add_argument("pack")
    e.add_argument("out", help="target directory")
    e.add_argument("--assistant", help="assistant directory (if the pack has one)")
    e.add_argument("--tokenizer", required=True, help="tokenizer.json to copy into the target")
    c = sub.add_parser("create", help="pack a target and its assistant")
    c.add_argument("pack")
    c.add_argument("--target", required=True)
    c.add_argument("--assistant", required=True)
    a = ap.parse_args(argv)
    try:
        if a.cmd == "expand":
            expand(a.pack, a.out, a.tokenizer, a.assistant)
        else:
            create(a.pack, a.target, a.assistant)
    except (OSError, KeyError, ValueError, st.CheckpointError) as err:
        print(f"pack: error: {a.pack}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
