"""The ``embedpool`` command: embed, score and inspect models from a terminal.

    embedpool embed "some text" "more text" [--query] [--model M] [--dimensions N] [--json]
    embedpool similarity "query" "doc one" "doc two" [--mode cosine] [--top-k K] [--json]
    embedpool models [--json]
    embedpool tokens "some text" [--query]
    embedpool serve ... / embedpool bench ...   (with embedpool[server] installed)

Global options (before or after the subcommand): --target (default
$EMBEDPOOL_TARGET or localhost:50051), --token (default $EMBEDPOOL_TOKEN),
--timeout, --tls, --root-certificates. A failed call prints
``error: <CODE>: <message>`` to stderr and exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType
from typing import Any

import numpy as np

from ._options import DEFAULT_TARGET
from .errors import EmbedpoolError
from .similarity import SimilarityMode
from .sync_client import EmbeddingClient

__all__ = ["main"]

TARGET_ENV = "EMBEDPOOL_TARGET"
PREVIEW_CHARS = 48

# Subcommands from other parts of the distribution (`serve` from embedpool.server, `bench`
# from embedpool.bench), found as entry points of this group and imported only when chosen:
# the client never names the server's modules. Each is a module with add_arguments and run.
COMMAND_GROUP = "embedpool.commands"
_EXTRA_OF = {"serve": "server", "bench": "bench"}
_HELP = {
    "serve": "run an embedding pool (needs embedpool[server])",
    "bench": "benchmark a running pool (needs embedpool[bench])",
}
# Global options that take a value, to find the subcommand in argv without parsing it.
_VALUE_OPTIONS = frozenset({"--target", "--token", "--timeout", "--root-certificates"})

Handler = Callable[[argparse.Namespace], int]


def add_connection_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The connection options; on subcommands with SUPPRESS defaults, so that a value
    given before the subcommand is not overwritten by a default after it."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    group = parser.add_argument_group("connection")
    group.add_argument(
        "--target",
        default=default(os.environ.get(TARGET_ENV) or DEFAULT_TARGET),
        help=f"host:port of the pool (default: ${TARGET_ENV} or {DEFAULT_TARGET})",
    )
    group.add_argument("--token", default=default(None), help="bearer token (default: $EMBEDPOOL_TOKEN)")
    group.add_argument(
        "--timeout", type=float, default=default(30.0), help="seconds per command (default: 30)"
    )
    group.add_argument("--tls", action="store_true", default=default(False), help="connect with TLS")
    group.add_argument(
        "--root-certificates",
        metavar="PEM",
        default=default(None),
        help="CA certificates file for TLS (implies --tls)",
    )


def _preview(text: str) -> str:
    flat = " ".join(text.split())
    return json.dumps(
        flat if len(flat) <= PREVIEW_CHARS else flat[: PREVIEW_CHARS - 1] + "…", ensure_ascii=False
    )


def _client(args: argparse.Namespace, **kwargs: Any) -> EmbeddingClient:
    return EmbeddingClient(
        target=args.target,
        token=args.token,
        timeout=args.timeout,
        tls=args.tls,
        root_certificates=args.root_certificates,
        model=getattr(args, "model", None) or "",
        **kwargs,
    )


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


# -- subcommands -------------------------------------------------------------------------


def _cmd_embed(args: argparse.Namespace) -> int:
    with _client(args) as client:
        result = client.embed(
            args.texts, input_type="query" if args.query else "document", dimensions=args.dimensions
        )
    if args.json:
        _print_json(
            {
                "model": result.model,
                "variant": result.variant,
                "dimensions": result.dimensions,
                "input_tokens": result.input_tokens,
                "truncated_inputs": result.truncated_inputs,
                "embeddings": result.tolist(),
            }
        )
        return 0
    print(
        f"model {result.model or '?'} ({result.variant or '?'}): {len(result)} vector(s) of "
        f"{result.dimensions} dimensions, {result.input_tokens} tokens"
        + (f", {result.truncated_inputs} truncated" if result.truncated_inputs else "")
    )
    for i, (text, vector) in enumerate(zip(args.texts, result.embeddings, strict=True)):
        head = ", ".join(f"{v:+.4f}" for v in vector[:5].tolist())
        more = ", …" if vector.shape[0] > 5 else ""
        norm = float(np.linalg.norm(vector))
        print(f"[{i}] dims={vector.shape[0]} norm={norm:.4f} [{head}{more}]  {_preview(text)}")
    return 0


def _cmd_similarity(args: argparse.Namespace) -> int:
    with _client(args) as client:
        ranked = client.rank(args.query, args.documents, mode=args.mode, top_k=args.top_k)
    if args.json:
        _print_json(
            {
                "query": args.query,
                "mode": args.mode,
                "results": [
                    {"rank": r, "index": i, "score": s, "document": args.documents[i]}
                    for r, (i, s) in enumerate(ranked, 1)
                ],
            }
        )
        return 0
    print(f"query {_preview(args.query)}, {args.mode}")
    print(f"{'RANK':>4}  {'SCORE':>9}  {'DOC':>4}  TEXT")
    for r, (i, s) in enumerate(ranked, 1):
        print(f"{r:>4}  {s:>9.4f}  {i:>4}  {_preview(args.documents[i])}")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    with _client(args) as client:
        models = client.list_models()
    if args.json:
        _print_json([m.to_dict() for m in models])
        return 0
    rows = [("NAME", "DIMS", "MAX TOKENS", "MAX BATCH", "SIMILARITY", "VARIANTS (* default)")]
    for m in models:
        variants = ", ".join(
            v.name + ("*" if v.is_default else "") + (f" ({v.backend})" if v.backend else "")
            for v in m.variants
        )
        batch = m.limits.max_inputs_per_request
        rows.append(
            (
                m.name + (" *" if m.is_default else ""),
                str(m.dimensions),
                str(m.max_input_tokens),
                str(batch) if batch else "-",
                m.default_similarity.value,
                variants or "-",
            )
        )
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1])
    return 0


def _cmd_tokens(args: argparse.Namespace) -> int:
    with _client(args) as client:
        counts = client.count_tokens(args.texts, input_type="query" if args.query else "document")
    if args.json:
        _print_json([{"text": t, "tokens": n} for t, n in zip(args.texts, counts, strict=True)])
        return 0
    for text, n in zip(args.texts, counts, strict=True):
        print(f"{n:>6}  {_preview(text)}")
    return 0


def _missing_extra(name: str, err: ImportError) -> Handler:
    extra = _EXTRA_OF.get(name, "server")

    def run(args: argparse.Namespace) -> int:
        print(
            f"error: 'embedpool {name}' needs more parts: pip install 'embedpool[{extra}]' ({err})",
            file=sys.stderr,
        )
        return 1

    return run


# -- parser ------------------------------------------------------------------------------


def _chosen_command(argv: Sequence[str]) -> str | None:
    """The first positional argument, skipping the values of global options."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _VALUE_OPTIONS:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def plugin_commands() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=COMMAND_GROUP)}


def _add_plugin_command(subparsers: Any, entry: EntryPoint, chosen: bool) -> None:
    help_text = _HELP.get(entry.name, f"the {entry.name} command of {entry.value}")
    parser: argparse.ArgumentParser = subparsers.add_parser(entry.name, help=help_text, description=help_text)
    if not chosen:
        return  # not imported unless chosen, so that `embedpool --help` stays light
    try:
        module: ModuleType = entry.load()
    except ImportError as err:
        parser.set_defaults(func=_missing_extra(entry.name, err), ignore_extra_args=True)
        return
    module.add_arguments(parser)
    parser.set_defaults(func=module.run)


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The argument parser; ``argv`` says which server subcommand (if any) to import."""
    parser = argparse.ArgumentParser(
        prog="embedpool", description="Embed texts and score them with an embedpool pool."
    )
    add_connection_options(parser, suppress=False)
    common = argparse.ArgumentParser(add_help=False)
    add_connection_options(common, suppress=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("embed", parents=[common], help="embed texts and show the vectors")
    p.add_argument("texts", nargs="+", metavar="TEXT")
    p.add_argument("--query", action="store_true", help="embed as search queries (query prompt)")
    p.add_argument("--model", help="model name (default: the pool's default)")
    p.add_argument("--dimensions", type=int, default=None, help="keep the first N dimensions")
    p.add_argument("--json", action="store_true", help="print full vectors as JSON")
    p.set_defaults(func=_cmd_embed)

    p = sub.add_parser("similarity", parents=[common], help="rank documents against a query")
    p.add_argument("query", metavar="QUERY")
    p.add_argument("documents", nargs="+", metavar="DOC")
    p.add_argument("--mode", choices=[m.value for m in SimilarityMode], default=SimilarityMode.DEFAULT.value)
    p.add_argument("--top-k", type=int, default=0, help="show only the best K (default: all)")
    p.add_argument("--model", help="model name (default: the pool's default)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_similarity)

    p = sub.add_parser("models", parents=[common], help="list the models the pool serves")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("tokens", parents=[common], help="count the tokens of texts")
    p.add_argument("texts", nargs="+", metavar="TEXT")
    p.add_argument("--query", action="store_true", help="count with the query prompt")
    p.add_argument("--model", help="model name (default: the pool's default)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_tokens)

    chosen = _chosen_command(argv)
    for name, entry in sorted(plugin_commands().items()):
        _add_plugin_command(sub, entry, chosen == name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(args_list)
    try:
        args, extra = parser.parse_known_args(args_list)
        if extra and not getattr(args, "ignore_extra_args", False):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exit_:  # --help, or a usage error already printed
        return exit_.code if isinstance(exit_.code, int) else 2
    handler: Handler = args.func
    try:
        return handler(args)
    except EmbedpoolError as err:
        code = f"{err.code.name}: " if err.code is not None else ""
        print(f"error: {code}{err}", file=sys.stderr)
        return 1
    except OSError as err:  # an unreadable --root-certificates file
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
