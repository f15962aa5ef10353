"""Trains a small Gemma 4 target from scratch on a text corpus (the demo pair's target).

    python3 tools/distill/train_target.py --corpus FILE [FILE ...] --tokenizer tokenizer.json \
        --out DIR [--preset demo|tiny] [--budget-minutes M] [--threads N] [--restart]

The corpus is tokenized with the real tokenizer through `specula tokenize`; the last 5 % of each
file's tokens is held out. The model keeps embedding rows only for the ids the corpus uses plus
one shared row for all others (gemma4_torch.VocabMap), so training never touches the 262k-row
tables; the expanded checkpoint is an ordinary Gemma 4 directory. Training stops at the budget
(the learning rate follows a cosine over it), saves its state every few minutes and resumes from
it when run again with the same --out. At the end the weights are rounded to what the pack
stores, and the tool writes:

    DIR/target/        the Hugging Face checkpoint Specula loads (bf16)
    DIR/target.npz     the compact pack (pack.py expands it again)
    DIR/report.json    held-out loss (PyTorch) and perplexity (measured by `specula score`)
"""
import argparse
import json
import math
import os
import random
import subprocess
import sys
import time

# Before torch loads its OpenMP runtime: spinning workers slow small operations (see distill.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import corpus as corpus_mod  # noqa: E402
import gemma4_torch as g  # noqa: E402
import pack  # noqa: E402

# Lengths of a copy example's passage (--copy-share), in tokens.
COPY_PASSAGE_MIN, COPY_PASSAGE_MAX = 24, 96

# Ids every Gemma 4 vocabulary subset keeps: pad, eos, bos, unk, <|turn>, <turn|>, "\n".
ALWAYS_KEPT = [0, 1, 2, 3, 105, 106, 107]

PRESETS = {
    # E2B's structure at demo size: sliding and full layers, per-layer embeddings, KV sharing
    # (the last two layers read layers 3 and 2), the double-wide MLP on shared layers.
    "demo": dict(hidden=256, layers=["sliding_attention", "sliding_attention", "full_attention",
                                     "sliding_attention", "sliding_attention", "full_attention"],
                 heads=4, kv_heads=1, head_dim=64, global_head_dim=128, ffn=768, ple=16,
                 kv_shared=2, window=256, seq=256, batch=8, lr=2e-3),
    # For tests: seconds per step.
    "tiny": dict(hidden=64, layers=["sliding_attention", "sliding_attention", "full_attention",
                                    "sliding_attention", "full_attention"],
                 heads=2, kv_heads=1, head_dim=32, global_head_dim=64, ffn=128, ple=8,
                 kv_shared=2, window=32, seq=64, batch=8, lr=3e-3),
    # For tests: 26B-A4B's structure (routed experts beside the dense MLP, k_eq_v full layers,
    # no per-layer embeddings or KV sharing) at the tiny preset's size.
    "tiny-moe": dict(hidden=64, layers=["sliding_attention", "sliding_attention", "full_attention",
                                        "sliding_attention", "full_attention"],
                     heads=2, kv_heads=1, head_dim=32, global_head_dim=64, ffn=64, ple=0,
                     kv_shared=0, window=32, seq=64, batch=8, lr=3e-3, experts=8, top_k=2,
                     moe_ffn=32, k_eq_v=True),
}


def target_config(p, vocab):
    text = {
        "model_type": "gemma4_text", "hidden_size": p["hidden"],
        "num_hidden_layers": len(p["layers"]), "num_attention_heads": p["heads"],
        "num_key_value_heads": p["kv_heads"], "num_global_key_value_heads": None,
        "head_dim": p["head_dim"], "global_head_dim": p["global_head_dim"],
        "attention_k_eq_v": p.get("k_eq_v", False), "intermediate_size": p["ffn"],
        "use_double_wide_mlp": p["kv_shared"] > 0,
        "hidden_size_per_layer_input": p["ple"], "vocab_size_per_layer_input": vocab,
        "num_kv_shared_layers": p["kv_shared"], "enable_moe_block": "experts" in p,
        "sliding_window": p["window"], "layer_types": p["layers"],
        "max_position_embeddings": 4096, "final_logit_softcapping": 30.0, "vocab_size": vocab,
        "rms_norm_eps": 1e-6, "hidden_activation": "gelu_pytorch_tanh",
        "tie_word_embeddings": True, "attention_bias": False,
        "rope_parameters": {
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
            "full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25,
                               "rope_theta": 1000000.0}}}
    if "experts" in p:
        text.update(num_experts=p["experts"], top_k_experts=p["top_k"],
                    moe_intermediate_size=p["moe_ffn"])
    return {"model_type": "gemma4", "architectures": ["Gemma4ForConditionalGeneration"],
            "text_config": text, "eos_token_id": [1, 106], "tie_word_embeddings": True}


def init_tensors(cfg, rows, rng):
    """Fresh weights: matrices ~ N(0, 1/fan_in), norms 1, layer scalars 1, embeddings with
    rows of RMS 1/sqrt(width) (so E[id] * sqrt(width) has RMS 1)."""
    out = {}
    for name, shape in g.Target.expected_shapes(cfg, rows).items():
        if len(shape) == 1:
            out[name] = np.ones(shape, np.float32)
        elif name.startswith("embed_tokens"):
            width = cfg.ple_dim if name == "embed_tokens_per_layer.weight" else cfg.hidden
            out[name] = rng.normal(0, 1 / math.sqrt(width), shape).astype(np.float32)
        else:
            std = 1 / math.sqrt(shape[-1])  # [out, in] or, for experts, [experts, out, in]
            if name.endswith(("o_proj.weight", "down_proj.weight", "experts.down_proj",
                              "per_layer_projection.weight")):
                std /= math.sqrt(2 * cfg.layers_n)  # residual branches start small
            out[name] = rng.normal(0, std, shape).astype(np.float32)
    return out


def batches(seqs, seq_len, batch, rng, copy_share=0.0, instruction=()):
    """Random windows of seq_len + 1 tokens from the training documents (long ones weighted).

    A `copy_share` of them are copy examples, so that the model learns to repeat its input (what
    prompt lookup drafts): a passage of COPY_PASSAGE_MIN to _MAX tokens, the `instruction` rows,
    the same passage again, then the text that followed the passage."""
    weights = np.array([max(0, len(s) - seq_len - 1) for s in seqs], np.float64)
    weights /= weights.sum()
    instruction = np.asarray(instruction, np.int64)
    while True:
        x = np.empty((batch, seq_len + 1), np.int64)
        for b in range(batch):
            s = seqs[rng.choice(len(seqs), p=weights)]
            at = rng.integers(0, len(s) - seq_len - 1)
            if rng.random() >= copy_share:
                x[b] = s[at:at + seq_len + 1]
                continue
            longest = min(COPY_PASSAGE_MAX, (seq_len + 1 - len(instruction)) // 2)
            n = int(rng.integers(COPY_PASSAGE_MIN, longest + 1))
            passage = s[at:at + n]
            rest = s[at + n:at + seq_len + 1 - n - len(instruction)]
            x[b] = np.concatenate([passage, instruction, passage, rest])
        yield torch.from_numpy(x)


def loss_of(model, rows, bias):
    out = model(rows[:, :-1])
    logits = out["logits"] + bias
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                             rows[:, 1:].reshape(-1))


def eval_windows(docs, window=512):
    """Held-out token windows as both evaluations read them: BOS, then up to `window` ids."""
    out = []
    for ids in docs:
        for at in range(0, len(ids), window):
            if len(ids[at:at + window]) >= 1:
                out.append([2] + list(ids[at:at + window]))
    return out


def held_out_loss(model, windows, vmap, bias):
    """Mean next-token loss (nats) over the evaluation windows."""
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for w in windows:
            rows = torch.from_numpy(vmap.row_of(w))[None]
            total += float(loss_of(model, rows, bias)) * (len(w) - 1)
            n += len(w) - 1
    model.train()
    return total / max(n, 1)


def copy_accuracy(model, docs, vmap, instruction, n=32, length=64, seed=0):
    """Share of a repeated passage's tokens that the model predicts (greedy) on held-out copy
    examples: `length` tokens, the instruction, the same tokens again."""
    rng = np.random.default_rng(seed)
    long_docs = [d for d in docs if len(d) > length]
    if not long_docs:
        return None
    hits, total = 0, 0
    model.eval()
    with torch.no_grad():
        for _ in range(n):
            d = long_docs[rng.integers(len(long_docs))]
            at = int(rng.integers(0, len(d) - length))
            passage = list(d[at:at + length])
            ids = [2] + passage + list(instruction) + passage
            rows = torch.from_numpy(vmap.row_of(ids))[None]
            pred = model(rows[:, :-1])["logits"][0].argmax(-1)
            start = len(ids) - length  # first row of the repetition
            hits += int((pred[start - 1:] == rows[0, start:]).sum())
            total += length
    model.train()
    return hits / total


def specula_perplexity(specula, target_dir, windows):
    """Specula's own perplexity over the same windows (`specula score`)."""
    nll, n = 0.0, 0
    for w in windows:
        r = subprocess.run([specula, "score", "-m", target_dir, "--prompt-ids",
                            ",".join(map(str, w)), "--json"], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(r.stderr.strip())
        j = json.loads(r.stdout)
        nll += j["mean_nll"] * j["scored_tokens"]
        n += j["scored_tokens"]
    return math.exp(nll / max(n, 1))


def log(msg):
    print(f"[train_target {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", nargs="+", required=True, help="text files (.gz allowed)")
    ap.add_argument("--tokenizer", required=True, help="the 262,144-token tokenizer.json")
    ap.add_argument("--out", required=True, help="work and output directory")
    ap.add_argument("--preset", default="demo", choices=sorted(PRESETS))
    ap.add_argument("--budget-minutes", type=float, default=60.0)
    ap.add_argument("--threads", type=int, default=0, help="default: all cores")
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps "
                    "(0: the budget decides)")
    ap.add_argument("--copy-share", type=float, default=0.0, help="share of training windows "
                    "that repeat a passage after an instruction (teaches the model to copy its "
                    "input)")
    ap.add_argument("--copy-instruction", default="\n\nRepeat the paragraph above exactly:\n\n",
                    help="the text between a copy example's passage and its repetition")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--restart", action="store_true", help="ignore a saved training state")
    ap.add_argument("--specula", default=os.path.join(HERE, "..", "..", "build", "specula"))
    a = ap.parse_args(argv)
    if a.budget_minutes <= 0:
        ap.error("--budget-minutes: must be positive")
    if not os.path.isfile(a.tokenizer):
        ap.error(f"--tokenizer: {a.tokenizer}: no such file")
    if not 0.0 <= a.copy_share <= 1.0:
        ap.error(f"--copy-share: {a.copy_share} is not in [0, 1]")
    if not os.access(a.specula, os.X_OK):
        ap.error(f"--specula: {a.specula}: not an executable (build Specula first)")
    torch.set_num_threads(a.threads or os.cpu_count() or 1)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    os.makedirs(a.out, exist_ok=True)
    p = PRESETS[a.preset]
    t0 = time.time()

    # Tokens, split per file: the last 5 % held out.
    tok_dir = corpus_mod.tokenizer_dir(a.tokenizer, a.out)
    try:
        docs = corpus_mod.cache_json(os.path.join(a.out, "tokens.json"), lambda: [
            ids for _, ids in corpus_mod.load_files(a.specula, tok_dir, a.corpus)])
    except corpus_mod.CorpusError as e:
        print(f"train_target: error: {e}", file=sys.stderr)
        return 1
    train, held = [], []
    for ids in docs:
        cut = int(len(ids) * 0.95)
        train.append(np.asarray(ids[:cut], np.int64))
        held.append(ids[cut:])
    if sum(max(0, len(s) - p["seq"] - 1) for s in train) == 0:
        print(f"train_target: error: the corpus is too short for {p['seq']}-token windows",
              file=sys.stderr)
        return 1
    with open(a.tokenizer) as f:
        vocab_size = len(json.load(f)["model"]["vocab"])
    instruction = corpus_mod.tokenize(a.specula, tok_dir, a.copy_instruction) \
        if a.copy_share > 0 else []
    if len(instruction) > p["seq"] - 2 * COPY_PASSAGE_MIN:
        print(f"train_target: error: --copy-instruction: {len(instruction)} tokens leave no room "
              f"for a passage in {p['seq']}-token windows", file=sys.stderr)
        return 1
    kept = sorted(set(ALWAYS_KEPT) | {t for ids in docs for t in ids} | set(instruction))
    vmap = g.VocabMap(vocab_size, kept, other=True)
    log(f"corpus: {sum(map(len, docs))} tokens in {len(docs)} files, {len(kept)} distinct ids "
        f"of {vocab_size}; held out {sum(map(len, held))}")

    cfg = g.TargetConfig(target_config(p, vocab_size))
    model = g.Target(cfg, init_tensors(cfg, vmap.rows, rng), vmap=vmap)
    bias = vmap.log_count_bias()
    train_rows = [vmap.row_of(s) for s in train]
    windows = eval_windows(held)
    decay = [q for n, q in model.w.named().items() if q.dim() >= 2]
    no_decay = [q for n, q in model.w.named().items() if q.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=p["lr"], betas=(0.9, 0.95))
    state_path = os.path.join(a.out, "state.pt")
    step, spent = 0, 0.0  # spent: training seconds so far (across resumes)
    if os.path.exists(state_path) and not a.restart:
        s = torch.load(state_path)
        if s["preset"] != a.preset or s["kept"] != kept:
            print(f"train_target: error: {state_path} belongs to another preset or corpus; "
                  "pass --restart to discard it", file=sys.stderr)
            return 1
        model.load_state_dict(s["model"])
        opt.load_state_dict(s["opt"])
        step, spent = s["step"], s["spent"]
        log(f"resumed at step {step} ({spent / 60:.1f} min trained)")

    budget = a.budget_minutes * 60
    warmup = 20
    data = batches(train_rows, p["seq"], p["batch"], rng, a.copy_share, vmap.row_of(instruction))
    last_log = last_save = time.time()
    smooth = None
    while True:
        frac = min(1.0, max(spent / budget, step / a.max_steps if a.max_steps else 0.0))
        lr = p["lr"] * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(
            math.pi * frac)))
        for group in opt.param_groups:
            group["lr"] = lr
        ts = time.time()
        loss = loss_of(model, next(data), bias)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        spent += time.time() - ts
        smooth = float(loss) if smooth is None else 0.98 * smooth + 0.02 * float(loss)
        now = time.time()
        done = spent >= budget or (a.max_steps and step >= a.max_steps)
        if now - last_log > 30 or done:
            log(f"step {step}: loss {smooth:.3f}, lr {lr:.2e}, {spent / 60:.1f}/"
                f"{a.budget_minutes:g} min, {step * p['batch'] * p['seq'] / max(spent, 1e-9):.0f}"
                " tok/s")
            last_log = now
        if now - last_save > 300 or done:
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                        "spent": spent, "preset": a.preset, "kept": kept}, state_path + ".tmp")
            os.replace(state_path + ".tmp", state_path)
            last_save = now
        if done:
            break

    loss_f32 = held_out_loss(model, windows, vmap, bias)
    pack.quantize_model(model)
    loss_stored = held_out_loss(model, windows, vmap, bias)
    out_dir = os.path.join(a.out, "target")
    model.save(out_dir, tokenizer_json=a.tokenizer)
    pack.save(os.path.join(a.out, "target.npz"), model, meta={"preset": a.preset})
    ppl = specula_perplexity(a.specula, out_dir, windows)
    copy = copy_accuracy(model, held, vmap, instruction or corpus_mod.tokenize(
        a.specula, tok_dir, a.copy_instruction))
    report = {"preset": a.preset, "steps": step, "train_minutes": spent / 60,
              "wall_minutes": (time.time() - t0) / 60, "train_loss": smooth,
              "held_out_loss": loss_f32, "held_out_loss_stored": loss_stored,
              "held_out_perplexity_specula": ppl, "held_out_perplexity_torch":
              math.exp(loss_stored), "kept_ids": len(kept),
              "pack_bytes": os.path.getsize(os.path.join(a.out, "target.npz")),
              "copy_share": a.copy_share, "held_out_copy_accuracy": copy}
    with open(os.path.join(a.out, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    log(f"held-out loss {loss_f32:.3f} (stored weights {loss_stored:.3f}); Specula's perplexity "
        f"{ppl:.2f} (PyTorch {math.exp(loss_stored):.2f}); a repeated passage predicted "
        f"{'-' if copy is None else f'{copy:.0%}'}; wrote {out_dir} and target.npz "
        f"({report['pack_bytes'] / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
