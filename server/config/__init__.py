"""Configuration: the catalogue (schema, loading, the bundled default) and the Serve /
KubeRay configs generated from it (deploy.py).

May import: embedpool.server.{errors,types}, pydantic, yaml. Never ray, grpc or torch:
`python -m embedpool.server.config.deploy` runs where neither is installed.
"""
