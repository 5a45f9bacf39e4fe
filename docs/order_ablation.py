"""Reader-only ablation for a finished pooled MemoRAG-Lite run (README, MemoRAG section).

The same memory clues and the same retrieved union (rebuilt from each record's trace), ordered
by fused score (RRF over the clue queries' rankings, what ClueRetriever(order="score") computes)
instead of corpus position. Memory recall and retrieval are deterministic, so this equals a run
with ``order: score`` at the cost of the reader alone.

Re-runs only fitter -> prompt_builder -> generator of the run's pipeline under the cpu-quality
profile, so reader and prompt are the run's. ``--check N`` first re-runs N questions in position
order and reports whether the recorded answers come back (greedy decoding): a harness check.
Pass ``--pipeline`` a copy with ``order: position`` when the run used it.

    python docs/order_ablation.py RUN_DIR EVAL_STORE_DIR OUT.jsonl --pipeline PIPELINE
"""

import argparse
import json
import time
from pathlib import Path

from ragkit.answering.run import strip_citations
from ragkit.config import EmbeddedStore, load_profile
from ragkit.evaluation.metrics import exact_match, f1
from ragkit.memory.clues import RRF_K
from ragkit.pipeline import load_pipeline
from ragkit.stores.store import open_store

ap = argparse.ArgumentParser()
ap.add_argument("run")
ap.add_argument("store")
ap.add_argument("out")
ap.add_argument("--pipeline", default="pipelines/memorag_lite.yaml")
ap.add_argument("--check", type=int, default=3)
a = ap.parse_args()

prof = load_profile("cpu-quality")
pipe = load_pipeline(a.pipeline, overrides=prof.component_overrides())
fitter, pb, gen = (pipe.get_component(n) for n in ("fitter", "prompt_builder", "generator"))
for c in (fitter, pb, gen):
    if hasattr(c, "warm_up"):
        c.warm_up()
store = open_store(EmbeddedStore(path=a.store))


def answer(question, ids):
    by_id = {d.id: d for d in store.qdrant.get_documents_by_id(ids)}
    docs = [by_id[i] for i in ids]
    docs = fitter.run(question=question, documents=docs)["documents"]
    prompt = pb.run(documents=docs, question=question, draft="")["prompt"]
    reply = gen.run(messages=prompt)["replies"][0]
    text = getattr(reply, "text", None) or str(reply)
    return strip_citations(text), [d.id for d in docs]


def score_order(rec):
    fused = {}
    for q in rec["extra"]["trace"]["clue_retriever"]["queries"]:
        for rank, i in enumerate(q["found"]):
            fused[i] = fused.get(i, 0.0) + 1.0 / (RRF_K + rank + 1)
    pos = {i: k for k, i in enumerate(rec["retrieved_ids"])}  # recorded = position order
    return sorted(fused, key=lambda i: (-fused[i], pos.get(i, 10**9)))


recs = [json.loads(line) for line in Path(a.run, "results.jsonl").read_text().splitlines()]
for rec in recs[: a.check]:
    got, _ = answer(rec["question"], rec["retrieved_ids"])
    print("check", got == rec["prediction"], repr(got), repr(rec["prediction"]), flush=True)
out = Path(a.out)
done = {json.loads(line)["id"] for line in out.read_text().splitlines()} if out.exists() else set()
with open(a.out, "a") as fh:
    for n, rec in enumerate(recs):
        if rec["id"] in done:
            continue
        t = time.time()
        ids = score_order(rec)
        pred, read = answer(rec["question"], ids)
        g = set(rec["gold_passage_ids"])
        row = {
            "id": rec["id"],
            "prediction": pred,
            "em": exact_match(pred, rec["answers"]),
            "f1": f1(pred, rec["answers"]),
            "read_ids": read,
            "first_gold": next((k + 1 for k, i in enumerate(read) if i in g), None),
            "seconds": time.time() - t,
        }
        fh.write(json.dumps(row) + "\n")
        fh.flush()
        print(n, row["em"], round(row["f1"], 2), round(row["seconds"], 1), flush=True)
