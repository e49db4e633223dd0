"""The Ray Serve wiring: the only package that imports ray.

app.py (the application and `build_app`), router.py (the ingress deployment: fronts,
Ray's gRPC proxy methods, health, replica discovery), replica.py (one deployment per
variant around a model runner), handle_backend.py (a variant through a Serve handle),
registry.py (direct endpoints in Ray's GCS), autoscale.py (the policy counting direct
batches), metrics.py (Prometheus through Ray), cli.py (`embedpool serve`), deploy_config.py (Serve
configs and the RayService block generated from a catalogue, checked with Ray's schema).

May import every other server package.
"""
