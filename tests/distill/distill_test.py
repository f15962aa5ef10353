"""tools/distill end to end at tiny scale: train_target.py, pack.py, distill.py, clustering.

Usage: distill_test.py SPECULA_BIN TMP_DIR

train_target.py trains a tiny target (the `tiny` preset, 40 steps) on a synthetic corpus with
make-random's 512-token tokenizer: its report must show Specula's perplexity equal to PyTorch's,
and its pack must expand to the same weights. distill.py then trains for 30 steps on that target:
the assistant it writes (directory and GGUF) must load in Specula and beat a random assistant's
acceptance on held-out prompts by 0.2, with output identical to plain decoding, and, packed with
pack.py, run through make demo's script with identical plain and speculative text; a centroid-head
run must write a permutation as token_ordering and report its top-k recall; a second run
resumes; --init fine-tunes the trained assistant; a mixture-of-experts target (tiny-moe) trains
and gets an assistant that beats a random one; bad inputs are refused with one line.
"""
import json
import os
import shutil
import subprocess
import sys
import unittest

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.join(HERE, "..", "..", "tools", "distill")
sys.path.insert(0, TOOLS)
import centroids  # noqa: E402
import distill as distill_mod  # noqa: E402
import gemma4_torch as g  # noqa: E402
import safetensors_io as st  # noqa: E402
import train_target  # noqa: E402

BIN = None
TMP = None
WORDS = ("the cache holds keys and values of every layer so a draft reads them while the "
         "target checks each token in one pass and the output stays the same").split()


def run(*args):
    r = subprocess.run([BIN, *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"specula {' '.join(args)} failed: {r.stderr}")
    return r.stdout


def distill(*args):
    return subprocess.run(["nice", "-n", "19", sys.executable, os.path.join(TOOLS, "distill.py"),
                           "--specula", BIN, "--threads", "2", *args],
                          capture_output=True, text=True)


def corpus_files():
    rng = np.random.default_rng(3)
    paths = []
    for i in range(3):
        p = os.path.join(TMP, f"corpus{i}.txt")
        with open(p, "w") as f:
            for _ in range(300):
                f.write(" ".join(rng.choice(WORDS, size=12)) + ".\n")
        paths.append(p)
    return paths


def acceptance(target, assistant, prompts):
    drafted = accepted = 0
    for p in prompts:
        j = json.loads(run("generate", "-m", target, "-md", assistant, "--prompt-ids",
                           ",".join(map(str, p)), "-n", "48", "--draft-max", "3", "--json"))
        drafted += j["stats"]["drafted"]
        accepted += j["stats"]["accepted"]
    return accepted / max(drafted, 1)


class Distill(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # make-random gives the tokenizer (and a target for the mismatch case); train_target a
        # learnable target.
        cls.random_target = os.path.join(TMP, "random")
        if not os.path.exists(os.path.join(cls.random_target, "tokenizer.json")):
            run("make-random", cls.random_target, "--preset", "e2b-tiny")
        cls.corpus = corpus_files()
        cls.trained = os.path.join(TMP, "trained")
        cls.target = os.path.join(cls.trained, "target")
        if not os.path.exists(os.path.join(cls.trained, "report.json")):
            r = subprocess.run(["nice", "-n", "19", sys.executable,
                                os.path.join(TOOLS, "train_target.py"), "--specula", BIN,
                                "--corpus", *cls.corpus, "--tokenizer",
                                os.path.join(cls.random_target, "tokenizer.json"), "--out",
                                cls.trained, "--preset", "tiny", "--budget-minutes", "3",
                                "--max-steps", "40", "--threads", "2", "--copy-share", "0.25",
                                "--copy-instruction", "\n"],  # 1 token of the 512
                               capture_output=True, text=True)
            assert r.returncode == 0, r.stdout + r.stderr
        # A random assistant of the shape distill.py trains, as the baseline.
        cls.random_asst = os.path.join(TMP, "random-asst")
        if not os.path.exists(os.path.join(cls.random_asst, "config.json")):
            tcfg = g.TargetConfig.load(cls.target)
            acfg = g.AssistantConfig(distill_mod.assistant_config(tcfg, "dense"))
            fresh = distill_mod.fresh_tensors(acfg, tcfg.vocab, np.random.default_rng(5))
            g.Assistant(acfg, fresh).save(cls.random_asst)

    def test_trained_target_report_and_pack(self):
        with open(os.path.join(self.trained, "report.json")) as f:
            report = json.load(f)
        print(f"tiny target: held-out loss {report['held_out_loss']:.3f}, perplexity "
              f"{report['held_out_perplexity_specula']:.2f} (PyTorch "
              f"{report['held_out_perplexity_torch']:.2f})")
        self.assertLess(report["held_out_loss"], 5.0)  # uniform over 512 ids: 6.24
        self.assertGreaterEqual(report["held_out_copy_accuracy"], 0.0)
        self.assertEqual(report["copy_share"], 0.25)
        self.assertAlmostEqual(report["held_out_perplexity_specula"] /
                               report["held_out_perplexity_torch"], 1.0, delta=0.01)
        expanded = os.path.join(TMP, "expanded")
        r = subprocess.run([sys.executable, os.path.join(TOOLS, "pack.py"), "expand",
                            os.path.join(self.trained, "target.npz"), expanded, "--tokenizer",
                            os.path.join(self.random_target, "tokenizer.json")],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        a = st.read(os.path.join(self.target, "model.safetensors"))
        b = st.read(os.path.join(expanded, "model.safetensors"))
        self.assertEqual(sorted(a), sorted(b))
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)

    def test_trained_assistant_beats_a_random_one(self):
        out = os.path.join(TMP, "dense")
        r = distill("--target", self.target, "--corpus", *self.corpus, "--out", out,
                    "--budget-minutes", "3", "--max-steps", "30", "--head", "dense",
                    "--windows", "32", "--prefix", "48", "--generate", "48",
                    "--eval-prompts", "8")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("identical to plain decoding", r.stdout)
        with open(os.path.join(out, "report.json")) as f:
            report = json.load(f)
        ev = report["eval"]
        self.assertTrue(ev["identical"])
        self.assertEqual(len(ev["acceptance_per_position"]), 3)
        self.assertLess(report["minutes"], 3 + 0.5)  # the budget, plus start-up slack
        self.assertEqual(report["steps"], 30)
        # Held-out prompts: the third file.
        tok = json.loads(run("tokenize", "-m", self.target, "-f", self.corpus[2], "--json"))
        ids = tok["ids"]
        prompts = [[2] + ids[at:at + 48] for at in range(0, 960, 96)]
        trained = acceptance(self.target, os.path.join(out, "assistant"), prompts)
        random = acceptance(self.target, self.random_asst, prompts)
        gguf = acceptance(self.target, os.path.join(out, "assistant.gguf"), prompts)
        print(f"acceptance: trained {trained:.3f}, random {random:.3f}, GGUF {gguf:.3f}")
        self.assertGreater(trained, random + 0.2)
        self.assertEqual(trained, gguf)
        # The pair packed compactly, then expanded and run by make demo's script.
        packed = os.path.join(TMP, "pair.npz")
        r = subprocess.run([sys.executable, os.path.join(TOOLS, "pack.py"), "create", packed,
                            "--target", self.target, "--assistant", os.path.join(out, "assistant")],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        env = dict(os.environ, DEMO_DIR=os.path.join(TMP, "demo"), DEMO_PROMPT="the cache ",
                   DEMO_TOKENIZER=os.path.join(self.random_target, "tokenizer.json"))
        r = subprocess.run(["bash", os.path.join(HERE, "..", "..", "scripts", "demo.sh"),
                            os.path.dirname(BIN), packed], capture_output=True, text=True, env=env)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("identical output: yes", r.stdout)
        self.assertIn("tokens per target pass", r.stdout)
        # A second run resumes from the saved state.
        r = distill("--target", self.target, "--corpus", *self.corpus, "--out", out,
                    "--budget-minutes", "0.5", "--head", "dense", "--windows", "32",
                    "--prefix", "48", "--generate", "48", "--eval-prompts", "4")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("teacher data: 32 windows from", r.stdout)
        self.assertIn("resumed from", r.stdout)
        # Fine-tuning: --init starts from the trained assistant (its weights, its head).
        tuned = os.path.join(TMP, "tuned")
        r = distill("--target", self.target, "--corpus", *self.corpus, "--out", tuned,
                    "--init", os.path.join(out, "assistant"), "--budget-minutes", "1",
                    "--max-steps", "2", "--windows", "8", "--prefix", "48", "--generate", "48",
                    "--eval-prompts", "4")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        with open(os.path.join(tuned, "report.json")) as f:
            tuned_report = json.load(f)
        self.assertEqual(tuned_report["head"], "dense")
        self.assertGreater(tuned_report["eval"]["acceptance_rate"], random + 0.2)

    def test_mixture_of_experts_target(self):
        # train_target's tiny-moe preset (routed experts, k_eq_v full layers), then its assistant.
        moe = os.path.join(TMP, "moe")
        r = subprocess.run(["nice", "-n", "19", sys.executable,
                            os.path.join(TOOLS, "train_target.py"), "--specula", BIN,
                            "--corpus", *self.corpus, "--tokenizer",
                            os.path.join(self.random_target, "tokenizer.json"), "--out", moe,
                            "--preset", "tiny-moe", "--budget-minutes", "3", "--max-steps", "40",
                            "--threads", "2"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        with open(os.path.join(moe, "report.json")) as f:
            report = json.load(f)
        self.assertAlmostEqual(report["held_out_perplexity_specula"] /
                               report["held_out_perplexity_torch"], 1.0, delta=0.01)
        target = os.path.join(moe, "target")
        self.assertTrue(g.TargetConfig.load(target).experts > 0)
        out = os.path.join(TMP, "moe-assistant")
        r = distill("--target", target, "--corpus", *self.corpus, "--out", out,
                    "--budget-minutes", "3", "--max-steps", "30", "--head", "dense",
                    "--windows", "32", "--prefix", "48", "--generate", "48",
                    "--eval-prompts", "4")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("identical to plain decoding", r.stdout)
        tcfg = g.TargetConfig.load(target)
        acfg = g.AssistantConfig(distill_mod.assistant_config(tcfg, "dense"))
        fresh = distill_mod.fresh_tensors(acfg, tcfg.vocab, np.random.default_rng(5))
        random_asst = os.path.join(TMP, "moe-random-asst")
        g.Assistant(acfg, fresh).save(random_asst)
        ids = json.loads(run("tokenize", "-m", target, "-f", self.corpus[2], "--json"))["ids"]
        prompts = [[2] + ids[at:at + 48] for at in range(0, 480, 96)]
        trained = acceptance(target, os.path.join(out, "assistant"), prompts)
        random = acceptance(target, random_asst, prompts)
        print(f"MoE target: acceptance trained {trained:.3f}, random {random:.3f}")
        self.assertGreater(trained, random + 0.2)

    def test_centroid_head_has_a_permutation_and_reports_recall(self):
        out = os.path.join(TMP, "centroid")
        r = distill("--target", self.target, "--corpus", *self.corpus, "--out", out,
                    "--budget-minutes", "0.8", "--head", "centroid", "--windows", "12",
                    "--prefix", "32", "--generate", "32", "--eval-prompts", "4")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        with open(os.path.join(out, "report.json")) as f:
            report = json.load(f)
        self.assertGreaterEqual(report["centroid_recall"], 0.0)
        self.assertLessEqual(report["centroid_recall"], 1.0)
        self.assertIn("top-", r.stdout)
        t = st.read(os.path.join(out, "assistant", "model.safetensors"))
        order = t["masked_embedding.token_ordering"]
        self.assertEqual(sorted(order.tolist()), list(range(512)))
        run("generate", "-m", self.target, "-md", os.path.join(out, "assistant"), "-n", "8",
            "--prompt-ids", "2,5,6,7")  # Specula loads it (it checks the permutation too)
        with open(os.path.join(out, "assistant", "config.json")) as f:
            self.assertTrue(json.load(f)["use_ordered_embeddings"])

    def test_bad_inputs_are_refused_in_one_line(self):
        empty = os.path.join(TMP, "empty.txt")
        open(empty, "w").close()
        other_target = os.path.join(TMP, "other")
        other_asst = os.path.join(TMP, "other-asst")
        if not os.path.exists(os.path.join(other_asst, "config.json")):
            run("make-random", other_target, "--preset", "31b-tiny", "--assistant", other_asst)
        cases = [
            (["--target", os.path.join(TMP, "nope")], "nope/config.json"),
            (["--target", self.random_asst], "--target"),
            (["--target", self.target, "--corpus", empty], "empty file"),
            (["--target", self.target, "--corpus", os.path.join(TMP, "missing.txt")],
             "missing.txt"),
            (["--target", self.target, "--init", other_asst], "--init"),
            (["--target", self.target, "--budget-minutes", "0"], "--budget-minutes"),
            (["--target", self.target, "--data-share", "0.9"], "--data-share"),
        ]
        for args, expect in cases:
            full = args + (["--corpus", self.corpus[0]] if "--corpus" not in args else [])
            r = distill(*full, "--out", os.path.join(TMP, "bad"))
            self.assertEqual(r.returncode, 1, f"{args}: {r.stdout} {r.stderr}")
            self.assertIn(expect, r.stderr, args)
            self.assertEqual(r.stderr.count("\n"), 1, r.stderr)
            self.assertTrue(r.stderr.startswith("distill: error: "), r.stderr)


class Clusters(unittest.TestCase):
    def test_balanced_clusters_respect_capacity(self):
        rng = np.random.default_rng(0)
        rows = rng.normal(size=(300, 16)).astype(np.float32)
        assign = centroids.balanced_clusters(rows, 10, 30)
        self.assertEqual(np.bincount(assign, minlength=10).max(), 30)

    def test_ordering_is_a_permutation_that_groups_similar_rows(self):
        rng = np.random.default_rng(1)
        centres = rng.normal(size=(4, 8)) * 5
        active = np.arange(10, 74)
        rows = (centres[np.arange(64) % 4] + rng.normal(size=(64, 8)) * 0.1).astype(np.float32)
        ordering, cluster_of = centroids.build_ordering(512, 16, active, rows)
        self.assertEqual(sorted(ordering.tolist()), list(range(512)))
        # Rows from one centre share clusters: 4 centres, at most 16 active per cluster.
        for c in range(4):
            members = active[np.arange(64) % 4 == c]
            self.assertLessEqual(len(set(cluster_of[members].tolist())), 2)

    def test_recall_counts_labels_in_the_top_clusters(self):
        cent = torch.eye(4)
        hidden = torch.tensor([[1.0, 0.5, 0, 0], [0.5, 0, 0, 1.0]])  # top 2: {0, 1}, {3, 0}
        cluster_of = np.array([0, 1, 2, 3])
        self.assertEqual(centroids.recall(cent, hidden, np.array([1, 2]), cluster_of, 2), 0.5)


class CopyExamples(unittest.TestCase):
    def test_a_copy_window_repeats_its_passage_after_the_instruction(self):
        doc = np.arange(1000, 2000, dtype=np.int64)  # distinct ids: every match is unambiguous
        instruction = np.array([7, 8, 9], np.int64)
        rng = np.random.default_rng(4)
        for share, copies in ((1.0, 64), (0.0, 0)):
            x = next(train_target.batches([doc], 64, 64, rng, share, instruction)).numpy()
            self.assertEqual(x.shape, (64, 65))
            found = 0
            for row in x:
                at = np.flatnonzero(row == 7)
                if len(at) == 0:  # plain text: one run of the document
                    np.testing.assert_array_equal(np.diff(row), 1)
                    continue
                n = int(at[0])
                self.assertTrue(24 <= n <= 31, n)  # (65 - 3) // 2 = 31 at most
                np.testing.assert_array_equal(row[n:n + 3], instruction)
                np.testing.assert_array_equal(row[n + 3:2 * n + 3], row[:n])
                # Then the text that followed the passage.
                np.testing.assert_array_equal(row[2 * n + 3:], row[n - 1] + 1 +
                                              np.arange(65 - 2 * n - 3))
                found += 1
            self.assertEqual(found, copies)


if __name__ == "__main__":
    BIN, TMP = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    shutil.rmtree(TMP, ignore_errors=True)  # the tool resumes from state an earlier run left
    os.makedirs(TMP, exist_ok=True)
    unittest.main(argv=[sys.argv[0], "-v"])
