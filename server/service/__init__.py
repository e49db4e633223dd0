"""The request path: from a parsed request to a model variant's answer and back.

messages.py (validation and protobuf <-> plain types), core.py (the service core every
front calls), batching.py (continuous batching per variant), backend.py (how the core
reaches a variant), scoring.py (similarity math).

May import: embedpool.server.{errors,types,config}, the generated code, numpy.
Never ray: unit tests run the real core over a fake model.
"""
