"""Configuration: the catalogue (its schema, loading, the bundled default).

The Serve / KubeRay configs generated from it are Ray wiring: serving/deploy_config.py.
May import: embedpool.server.{errors,types}, pydantic, yaml. Never ray, grpc or torch.
"""
