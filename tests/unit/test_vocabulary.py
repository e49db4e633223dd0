"""The shared names (embedpool.vocabulary) against the generated proto enums."""

from __future__ import annotations

import re
from typing import Any, get_args

import pytest

from embedpool import vocabulary as vocab
from embedpool.server import types
from embedpool.server.service import messages
from embedpool.v1 import embedding_service_pb2 as pb

TABLES = [vocab.PRECISIONS, vocab.BACKENDS, vocab.DEVICES, vocab.INPUT_TYPES, vocab.SIMILARITY_MODES]
TABLES.append(vocab.TRUNCATION_DIRECTIONS)


def _prefix(enum: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", enum).upper() + "_"  # SimilarityMode -> SIMILARITY_MODE_


@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.enum)
def test_each_table_names_every_value_of_its_proto_enum(table: vocab.Vocabulary[Any]) -> None:
    enum = pb.DESCRIPTOR.enum_types_by_name[table.enum]
    proto = {v.name.removeprefix(_prefix(table.enum)).lower(): v.number for v in enum.values if v.number}
    assert dict(table.numbers) == proto
    assert table.known == {v.number for v in enum.values}
    for name, number in table.numbers.items():
        assert table.name(number) == name and table.number(name) == number
    assert table.number(None) == 0 and table.name(0) == table.unspecified
    with pytest.raises(KeyError):
        table.name(999)


def test_the_server_reads_the_same_tables() -> None:
    assert get_args(types.Precision) == vocab.PRECISIONS.names
    assert get_args(types.BackendName) == vocab.BACKENDS.names
    assert messages.PRECISIONS[pb.PRECISION_UNSPECIFIED] == "float32"
    assert messages.MODES[pb.SIMILARITY_MODE_DOT_PRODUCT] == "dot_product"
    assert messages.BACKENDS[pb.BACKEND_UNSPECIFIED] is None
    assert messages.INPUT_TYPES[pb.INPUT_TYPE_UNSPECIFIED] == "document"
