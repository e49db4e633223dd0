"""`embedpool bench`: a closed-loop load generator for a running pool (extra `bench`).

Uses the client's public API and the generated stubs only; matplotlib for the plot.
"""
