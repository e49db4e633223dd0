"""Property-based tests (hypothesis) of request building, parsing, validation and scoring.

Client side (client/_request.py, client/similarity.py): batch splitting covers every
index once and in order; raw-bytes vectors round-trip bit for bit through parse and
merge; the local similarity math is numpy's. Server side (server/service/messages.py,
server/service/scoring.py): validation accepts exactly the valid requests and refuses the rest
with InvalidArgument, never another exception; score matrices are finite, symmetric
and agree with the pairwise math.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from embedpool import SimilarityMode
from embedpool._options import ClientOptions
from embedpool._request import EmbedSpec, parse_embeddings, split
from embedpool.server.errors import InvalidArgument
from embedpool.server.service import messages as convert
from embedpool.server.service.scoring import score_matrix, top_k
from embedpool.server.service.validation import MAX_NAME_CHARS, check_choice, check_embed
from embedpool.similarity import similarity
from embedpool.v1 import embedding_service_pb2 as pb

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MODES = ("cosine", "dot_product", "euclidean")
F32 = np.dtype(np.float32)


# ---- client: batch splitting ---------------------------------------------------------------


@FAST
@given(n=st.integers(0, 5000), size=st.integers(1, 700))
def test_split_covers_every_index_once_in_order(n: int, size: int) -> None:
    slices = split(n, size)
    covered = [i for s in slices for i in range(s.start, s.stop)]
    assert covered == list(range(n))
    assert all(0 < s.stop - s.start <= size for s in slices)
    assert all(s.stop - s.start == size for s in slices[:-1])  # only the last may be short
    assert len(slices) == math.ceil(n / size)


# ---- client: parsing responses -------------------------------------------------------------

PRECISION_DTYPES = {"float32": np.float32, "int8": np.int8, "uint8": np.uint8}
PRECISION_PROTO = {"float32": pb.PRECISION_FLOAT32, "int8": pb.PRECISION_INT8, "uint8": pb.PRECISION_UINT8}


@st.composite
def vector_arrays(draw: st.DrawFn) -> tuple[str, np.ndarray]:
    precision = draw(st.sampled_from(sorted(PRECISION_DTYPES)))
    shape = (draw(st.integers(1, 40)), draw(st.integers(1, 48)))
    # Any float32 at all: NaN (with payloads), infinities, subnormals, -0.0.
    array = draw(hnp.arrays(PRECISION_DTYPES[precision], shape))
    return precision, array


def response_for(rows: np.ndarray, precision: str) -> pb.EmbedResponse:
    little = rows.astype(rows.dtype.newbyteorder("<"))
    return pb.EmbedResponse(
        embeddings=[pb.Embedding(data=row.tobytes()) for row in little],
        dimensions=rows.shape[1],
        precision=PRECISION_PROTO[precision],
    )


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    width = {1: np.uint8, 4: np.uint32}[a.dtype.itemsize]
    return a.shape == b.shape and a.dtype == b.dtype and bool((a.view(width) == b.view(width)).all())


@FAST
@given(vector_arrays())
def test_raw_bytes_round_trip_any_array(case: tuple[str, np.ndarray]) -> None:
    precision, array = case
    parsed = parse_embeddings(response_for(array, precision), array.shape[0])
    assert same_bits(parsed, array)
    assert parsed.flags.writeable


@FAST
@given(vector_arrays(), st.integers(1, 50))
def test_split_then_merge_gives_the_rows_back_in_input_order(case: tuple[str, np.ndarray], size: int) -> None:
    precision, array = case
    spec = EmbedSpec.resolve(ClientOptions(), precision=precision)  # type: ignore[arg-type]
    slices = split(array.shape[0], size)
    responses = [response_for(array[s], precision) for s in slices]
    merged = spec.merge(responses, [s.stop - s.start for s in slices])
    assert same_bits(merged.embeddings, array)
    assert merged.dimensions == array.shape[1] and merged.precision == precision


@FAST
@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 10), st.integers(1, 16))))
def test_numbers_encoding_parses_to_the_same_floats(array: np.ndarray) -> None:
    resp = pb.EmbedResponse(
        embeddings=[pb.Embedding(values=row) for row in array.tolist()],
        dimensions=array.shape[1],
        precision=pb.PRECISION_FLOAT32,
    )
    assert np.array_equal(parse_embeddings(resp, array.shape[0]), array, equal_nan=True)


# ---- similarity math -----------------------------------------------------------------------

finite = st.floats(-1e3, 1e3, allow_nan=False, width=32)


@st.composite
def vector_pairs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    dims = draw(st.integers(1, 32))
    a = draw(hnp.arrays(np.float64, dims, elements=finite))
    b = draw(hnp.arrays(np.float64, dims, elements=finite))
    return a, b


@FAST
@given(vector_pairs())
def test_client_similarity_is_numpys_math(pair: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = pair
    norms = np.linalg.norm(a) * np.linalg.norm(b)
    expected_cosine = 0.0 if norms == 0 else float(np.dot(a, b) / norms)
    assert similarity(a, b, SimilarityMode.COSINE) == pytest.approx(expected_cosine, rel=1e-12, abs=1e-12)
    assert similarity(a, b, "dot_product") == pytest.approx(float(np.dot(a, b)), rel=1e-12, abs=1e-9)
    assert similarity(a.tolist(), b.tolist(), "euclidean") == pytest.approx(
        -float(np.linalg.norm(a - b)), rel=1e-12, abs=1e-9
    )


@st.composite
def matrices(draw: st.DrawFn, elements: st.SearchStrategy[float] = finite) -> tuple[np.ndarray, np.ndarray]:
    dims = draw(st.integers(1, 24))
    q = draw(hnp.arrays(np.float32, (draw(st.integers(1, 6)), dims), elements=elements))
    d = draw(hnp.arrays(np.float32, (draw(st.integers(1, 6)), dims), elements=elements))
    return q, d


@FAST
@given(matrices(), st.sampled_from(MODES))
def test_score_matrix_matches_the_pairwise_client_math(qd: tuple[np.ndarray, np.ndarray], mode: str) -> None:
    q, d = qd
    scores = score_matrix(q, d, mode)  # type: ignore[arg-type]
    assert scores.shape == (len(q), len(d)) and scores.dtype == np.float32
    for i, j in np.ndindex(scores.shape):
        want = similarity(q[i].astype(np.float64), d[j].astype(np.float64), mode)
        scale = 1.0 if mode == "cosine" else 1.0 + float(np.abs(q[i]).max() + np.abs(d[j]).max())
        assert math.isclose(float(scores[i, j]), want, rel_tol=1e-5, abs_tol=1e-6 * scale**2 + 1e-6), (
            mode,
            i,
            j,
        )


@FAST
@given(matrices(), st.sampled_from(MODES))
def test_score_matrix_is_symmetric_and_bounded(qd: tuple[np.ndarray, np.ndarray], mode: str) -> None:
    q, d = qd
    forward = score_matrix(q, d, mode)  # type: ignore[arg-type]
    backward = score_matrix(d, q, mode)  # type: ignore[arg-type]
    assert np.allclose(forward, backward.T, rtol=1e-6, atol=1e-6 * (1 + float(np.abs(forward).max())))
    if mode == "cosine":
        assert (np.abs(forward) <= 1.0).all()
        self_scores = np.diag(score_matrix(q, q, "cosine"))
        nonzero = np.linalg.norm(q.astype(np.float64), axis=1) > 0
        assert np.allclose(self_scores[nonzero], 1.0, atol=1e-6)
        assert (self_scores[~nonzero] == 0).all()  # a zero vector scores 0, not NaN
    if mode == "euclidean":
        assert (forward <= 0).all()
        assert np.allclose(np.diag(score_matrix(q, q, "euclidean")), 0.0, atol=1e-2)


any_finite_f32 = st.floats(allow_nan=False, allow_infinity=False, width=32)


@FAST
@given(matrices(any_finite_f32))
def test_cosine_of_any_finite_float32_vectors_is_finite(qd: tuple[np.ndarray, np.ndarray]) -> None:
    # float32 norms of vectors near float32's max overflow to inf, and inf/inf is NaN: the
    # math runs in float64 so that a caller's finite vectors never get a NaN score.
    q, d = qd
    assert np.isfinite(score_matrix(q, d, "cosine")).all()
    assert not np.isnan(score_matrix(q, d, "euclidean")).any()
    assert not np.isnan(score_matrix(q, d, "dot_product")).any()


@FAST
@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 5), st.integers(1, 30)), elements=finite), st.data())
def test_top_k_returns_the_best_k_best_first(scores: np.ndarray, data: st.DataObject) -> None:
    k = data.draw(st.integers(1, 2**32 - 1))
    idx, val = top_k(scores, k)
    assert idx.shape == val.shape == (scores.shape[0], min(k, scores.shape[1]))
    for row, ids, vals in zip(scores, idx, val, strict=True):
        assert len(set(ids.tolist())) == len(ids)
        assert (np.diff(vals) <= 0).all()
        assert np.array_equal(row[ids], vals)
        assert np.array_equal(np.sort(vals)[::-1], np.sort(row)[::-1][: len(vals)])


# ---- server: request validation ------------------------------------------------------------

enum_numbers = st.integers(-3, 8)
names = st.one_of(st.just(""), st.text(max_size=8), st.text(min_size=250, max_size=270))


@st.composite
def embed_requests(draw: st.DrawFn) -> pb.EmbedRequest:
    normalize = draw(st.sampled_from([None, True, False]))
    req = pb.EmbedRequest(
        model=pb.ModelSelector(
            model=draw(names),
            variant=draw(names),
            backend=draw(enum_numbers),
            device=draw(enum_numbers),
        ),
        inputs=draw(st.lists(st.one_of(st.just(""), st.text(max_size=20)), max_size=12)),
        input_type=draw(enum_numbers),
        prompt=draw(st.one_of(st.just(""), st.text(max_size=8))),
        prompt_name=draw(names),
        truncate=draw(st.booleans()),
        truncation_direction=draw(enum_numbers),
        dimensions=draw(st.integers(0, 2**32 - 1)),
        precision=draw(enum_numbers),
        encoding=draw(enum_numbers),
    )
    if normalize is not None:
        req.normalize = normalize
    return req


def embed_item_is_valid(req: pb.EmbedRequest, max_inputs: int) -> bool:
    return (
        0 < len(req.inputs) <= max_inputs
        and all(req.inputs)
        and req.input_type in convert.INPUT_TYPES
        and req.precision in convert.PRECISIONS
        and req.encoding in convert.ENCODINGS
        and req.truncation_direction in convert.TRUNCATION_DIRECTIONS
        and req.model.backend in convert.BACKENDS
        and req.model.device in convert.DEVICES
        and not (req.prompt and req.prompt_name)
        and len(req.prompt_name) <= MAX_NAME_CHARS
    )


@FAST
@given(embed_requests(), st.integers(1, 10))
def test_embed_item_accepts_exactly_the_valid_requests(req: pb.EmbedRequest, max_inputs: int) -> None:
    valid = embed_item_is_valid(req, max_inputs)
    try:
        # The front's conversion, then the checks every front's requests pass.
        request = convert.embed_request(req)
        check_embed(request.item, max_inputs)
        item = request.item
    except InvalidArgument as exc:
        assert not valid, exc.message
        assert exc.message and len(exc.message) <= 512
        return
    assert valid
    assert item.texts == list(req.inputs)
    assert item.input_type == convert.INPUT_TYPES[req.input_type]
    assert item.precision == convert.PRECISIONS[req.precision]
    assert item.normalize == (req.normalize if req.HasField("normalize") else True)
    assert item.dimensions == req.dimensions and item.truncate == req.truncate
    assert request.encoding == ("bytes" if req.encoding == pb.VECTOR_ENCODING_BYTES else "numbers")
    assert item.truncate_left == (req.truncation_direction == pb.TRUNCATION_DIRECTION_LEFT)


@FAST
@given(embed_requests())
def test_selector_accepts_known_enums_and_short_names_only(req: pb.EmbedRequest) -> None:
    sel = req.model
    valid = (
        sel.backend in convert.BACKENDS
        and sel.device in convert.DEVICES
        and len(sel.model) <= MAX_NAME_CHARS
        and len(sel.variant) <= MAX_NAME_CHARS
    )
    try:
        choice = convert.selector(sel)
        check_choice(choice)
    except InvalidArgument as exc:
        assert not valid and len(exc.message) <= 512
        return
    assert valid and (choice.model, choice.variant) == (sel.model, sel.variant)
    assert (choice.backend, choice.device) == (convert.BACKENDS[sel.backend], convert.DEVICES[sel.device])


@st.composite
def vector_lists(draw: st.DrawFn) -> list[list[float]]:
    any_float = st.floats(width=32)  # NaN and infinities included
    dims = draw(st.integers(0, 6))
    rows = draw(st.integers(0, 7))
    out = []
    for _ in range(rows):
        ragged = draw(st.integers(0, 9)) == 0
        n = draw(st.integers(0, 6)) if ragged else dims
        out.append(draw(st.lists(any_float, min_size=n, max_size=n)))
    return out


@FAST
@given(vector_lists(), st.integers(1, 6))
def test_vectors_refuse_empty_ragged_non_finite_and_too_many(rows: list[list[float]], max_count: int) -> None:
    msgs = [pb.Vector(values=r) for r in rows]
    valid = (
        0 < len(rows) <= max_count
        and len(rows[0]) > 0
        and all(len(r) == len(rows[0]) for r in rows)
        and all(math.isfinite(v) for r in rows for v in r)
    )
    try:
        mat = convert.vectors(msgs, "query_vectors", max_count)
    except InvalidArgument as exc:
        assert not valid and exc.message.startswith("query_vectors")
        return
    assert valid
    assert mat.dtype == np.float32 and np.array_equal(mat, np.array(rows, dtype=np.float32))
