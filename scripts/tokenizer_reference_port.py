#!/usr/bin/python3
"""A line-by-line Python port of transformers 4.30's slow BertTokenizer path
(tokenize(): lowercasing that spares special tokens, special-token split;
BasicTokenizer; WordpieceTokenizer), for differential checks of bertune's
tokenizer on more text than the golden files hold. It is checked against the
golden files first (--check-golden), so it inherits their authority only as
far as they reach; it needs nothing but the standard library.

  /usr/bin/python3 scripts/tokenizer_reference_port.py --check-golden
  /usr/bin/python3 scripts/tokenizer_reference_port.py [--lower] FILE > ref.jsonl   # one text per line
  build/bertune tokenize [--tokenizer DIR_WITH_do_lower_case] --input FILE > ours.jsonl
  (then compare the "ids" of each line)

Also: --every-codepoint OUT writes lines covering every code point, mixed
with spaces, letters and special tokens, as a stress input.
"""
import json
import random
import re
import sys
import unicodedata
from pathlib import Path

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
VOCAB = {}
for i, line in enumerate(open(SHARED / "models/klue-bert-base/vocab.txt", encoding="utf-8")):
    VOCAB[line.rstrip("\n")] = i
SPECIALS = sorted(["[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]"])
SPECIAL_SPLIT = re.compile("(" + "|".join(re.escape(s) for s in SPECIALS) + ")")
LOWER_SPARING_SPECIALS = re.compile("(" + "|".join(re.escape(s) for s in SPECIALS) + r")|(.+?)")


def is_whitespace(c):
    return c in " \t\n\r" or unicodedata.category(c) == "Zs"


def is_control(c):
    return c not in "\t\n\r" and unicodedata.category(c).startswith("C")


def is_punctuation(c):
    cp = ord(c)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(c).startswith("P")


def is_cjk(cp):
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def strip_accents(t):
    return "".join(c for c in unicodedata.normalize("NFD", t) if unicodedata.category(c) != "Mn")


def basic_tokenize(text, lower):
    text = "".join(" " if is_whitespace(c) else c for c in text
                   if not (ord(c) == 0 or ord(c) == 0xFFFD or is_control(c)))
    text = "".join(f" {c} " if is_cjk(ord(c)) else c for c in text)
    words = []
    for tok in text.strip().split():
        if tok in SPECIALS:  # never_split=all_special_tokens
            words.append(tok)
            continue
        if lower:
            tok = strip_accents(tok.lower())
        cur = []
        for c in tok:
            if is_punctuation(c):
                if cur:
                    words.append("".join(cur))
                    cur = []
                words.append(c)
            else:
                cur.append(c)
        if cur:
            words.append("".join(cur))
    return words


def wordpiece(word):
    if len(word) > 100:
        return [VOCAB["[UNK]"]]
    ids, start = [], 0
    while start < len(word):
        end, found = len(word), None
        while start < end:
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in VOCAB:
                found = VOCAB[piece]
                break
            end -= 1
        if found is None:
            return [VOCAB["[UNK]"]]
        ids.append(found)
        start = end
    return ids


def encode(text, lower=False):
    if lower:
        text = LOWER_SPARING_SPECIALS.sub(lambda m: m.groups()[0] or m.groups()[1].lower(), text)
    ids = [VOCAB["[CLS]"]]
    for part in SPECIAL_SPLIT.split(text):
        if part in SPECIALS:
            ids.append(VOCAB[part])
        elif part:
            for w in basic_tokenize(part, lower):
                ids += wordpiece(w)
    return ids + [VOCAB["[SEP]"]]


def check_golden():
    n = bad = 0
    for name in ["klue_nsmc_train_5000.jsonl", "klue_tricky.jsonl"]:
        for line in open(SHARED / "golden/tokenizer" / name, encoding="utf-8"):
            case = json.loads(line)
            n += 1
            if encode(case["text"]) != case["ids"]:
                bad += 1
                print("mismatch:", repr(case["text"])[:100], file=sys.stderr)
    print(f"{n - bad}/{n} golden cases match")
    return bad == 0


def every_codepoint(out):
    random.seed(7)
    cps = [c for c in range(1, 0x110000) if not 0xD800 <= c < 0xE000]
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        for i in range(0, len(cps), 48):
            s = []
            for c in cps[i:i + 48]:
                s.append(chr(c))
                r = random.random()
                if r < 0.15:
                    s.append(" ")
                elif r < 0.25:
                    s.append(random.choice(["a", "Z", "é", "가", "[CLS]", "[MASK]", "Σ", "İ"]))
            f.write("".join(s).replace("\n", " ").replace("\r", " ") + "\n")


if __name__ == "__main__":
    args = sys.argv[1:]
    if args == ["--check-golden"]:
        sys.exit(0 if check_golden() else 1)
    if len(args) == 2 and args[0] == "--every-codepoint":
        every_codepoint(args[1])
        sys.exit(0)
    lower = "--lower" in args
    files = [a for a in args if a != "--lower"]
    if len(files) != 1:
        sys.exit(__doc__)
    with open(files[0], encoding="utf-8", newline="\n") as f:
        for line in f:
            print(json.dumps(encode(line.rstrip("\n").rstrip("\r"), lower)))
