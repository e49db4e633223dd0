"""The pool's server side (`pip install 'embedpool[server]'`), in packages by concern.

Arrows allowed between them (tests/unit/test_layout.py reads the imports and fails on others):

    serving ──> fronts ──> service ──> config, errors, types
       │  └──> direct ──────┘             ▲
       └──> model ────────────────────────┘

- errors, types: the domain's exceptions and plain data. No ray, grpc or generated code.
- config: the catalogue's schema and loading. No ray, grpc, torch.
- model: load a variant and embed batches (runners, tokenization, post-processing, exports,
  custom models, threads). No ray, grpc or generated code.
- service: the request path (validation and protobuf mapping, the service core, batching,
  the variant-backend interface). No ray.
- fronts: the network fronts (gRPC server, its decoding interceptor, auth) and the one
  error -> status adapter they share. No ray.
- direct: the Router -> replica channel (wire format, sender, receiver). No ray.
- serving: the Ray Serve wiring, the only package that imports ray (app, deployments,
  registry, autoscaling policy, metrics, the `serve` command, Serve-config generation).
See docs/ARCHITECTURE.md for one request's path through them.
"""
