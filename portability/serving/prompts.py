"""Prompts: seeded token ids for the shipped configs (no tokenizer, nothing downloaded), or a small
real-text set tokenised with the model's own tokenizer when real weights are given (`model: /path`)."""

from __future__ import annotations

import random

# Token ids below this are left out: the shipped tiny config reserves 0..2 for pad/bos/eos.
FIRST_ID = 3

REAL_TEXT = (
    "The capital of France is Paris. It is known for the Eiffel Tower, which was built for the 1889 "
    "World's Fair and was at first criticised by many artists of the time.",
    "def fibonacci(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
    "Photosynthesis converts light energy into chemical energy: plants take in carbon dioxide and "
    "water and, using sunlight, produce glucose and release oxygen.",
    "In 1969 Apollo 11 landed on the Moon. Neil Armstrong and Buzz Aldrin walked on the surface while "
    "Michael Collins orbited above in the command module.",
    "A prime number has exactly two divisors, one and itself. The first primes are 2, 3, 5, 7, 11, 13, "
    "17, 19, 23 and 29; there are infinitely many of them.",
    "Water boils at 100 degrees Celsius at sea level; at higher altitude the air pressure is lower and "
    "water boils at a lower temperature.",
)


def token_prompts(n: int, length: int, vocab: int, seed: int) -> list[list[int]]:
    """`n` prompts of `length` token ids, the same for every engine given the same seed."""
    rng = random.Random(seed)
    return [[rng.randrange(FIRST_ID, vocab) for _ in range(length)] for _ in range(n)]


def text_prompts(model_dir: str, n: int, length: int) -> list[list[int]]:
    """Real text through the model's tokenizer, cycled and cut/extended to exactly `length` tokens."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    out = []
    for i in range(n):
        ids: list[int] = []
        j = i
        while len(ids) < length:
            ids += tok(REAL_TEXT[j % len(REAL_TEXT)], add_special_tokens=False).input_ids
            j += 1
        out.append(ids[:length])
    return out
