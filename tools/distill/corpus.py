"""Corpus files to token ids through Specula's own tokenizer (`specula tokenize`).

A corpus is a list of text files (plain, or .gz). Each file is tokenized with the target's
tokenizer.json by `specula tokenize`, so training sees exactly the ids Specula gives the same
text. Long files are cut at blank lines into pieces of at most 1 MB first (`tokenize` reads a
file whole).
"""
import gzip
import json
import os
import subprocess
import tempfile


class CorpusError(Exception):
    """A corpus that cannot be used; the message names the file."""


def read_text(path):
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            with open(path, "rb") as f:
                raw = f.read()
    except OSError as e:
        raise CorpusError(f"{path}: {e.strerror or e}") from e
    except (gzip.BadGzipFile, EOFError) as e:
        raise CorpusError(f"{path}: not a readable gzip file ({e})") from e
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorpusError(f"{path}: not UTF-8 text (byte {e.start})") from e


def pieces(text, limit=1 << 20):
    """Cuts text at blank lines into pieces of at most `limit` bytes (a longer paragraph is cut
    at a newline or, failing that, anywhere)."""
    out, cur = [], []
    size = 0
    for para in text.split("\n\n"):
        para = para + "\n\n"
        while len(para.encode()) > limit:
            cut = para.rfind("\n", 0, limit // 2) + 1 or limit // 2
            out.append(para[:cut])
            para = para[cut:]
        if size + len(para.encode()) > limit and cur:
            out.append("".join(cur))
            cur, size = [], 0
        cur.append(para)
        size += len(para.encode())
    if cur:
        out.append("".join(cur))
    return [p for p in out if p.strip()]


def tokenize(specula, model_dir, text):
    """Token ids of `text` (no BOS) by `specula tokenize -m model_dir`."""
    ids = []
    for piece in pieces(text):
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write(piece)
            name = f.name
        try:
            r = subprocess.run([specula, "tokenize", "-m", model_dir, "-f", name],
                               capture_output=True, text=True)
        finally:
            os.unlink(name)
        if r.returncode != 0:
            raise CorpusError(r.stderr.strip() or f"specula tokenize failed ({r.returncode})")
        line = r.stdout.strip()
        ids.extend(int(x) for x in line.split(",") if x)
    return ids


def tokenizer_dir(tokenizer_json, work):
    """A directory holding just tokenizer.json, which `specula tokenize -m` accepts."""
    d = os.path.join(work, "tokenizer")
    os.makedirs(d, exist_ok=True)
    dst = os.path.join(d, "tokenizer.json")
    if not os.path.exists(dst):
        os.symlink(os.path.abspath(tokenizer_json), dst)
    return d


def load_files(specula, model_dir, paths, bos=2):
    """[(path, [ids with BOS first])] for each file; refuses empty files and corpora."""
    if not paths:
        raise CorpusError("--corpus: no files given")
    docs = []
    for p in paths:
        text = read_text(p)
        if not text.strip():
            raise CorpusError(f"{p}: empty file")
        docs.append((p, [bos] + tokenize(specula, model_dir, text)))
    return docs


def cache_json(path, make):
    """Returns the JSON at `path`, computing and storing it with make() the first time."""
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    value = make()
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f)
    os.replace(tmp, path)
    return value
