"""Milvus's name/schema rules as pure functions (shardproxy.ddlrules)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymilvus.grpc_gen import common_pb2, schema_pb2

from shardproxy import ddlrules
from shardproxy.catalog import collection_key, split_key, synthetic_id
from shardproxy.errors import InvalidArgument

DT = schema_pb2.DataType


def _schema(dim: int = 8, extra: list[schema_pb2.FieldSchema] | None = None) -> schema_pb2.CollectionSchema:
    s = schema_pb2.CollectionSchema(name="c")
    s.fields.add(name="id", data_type=DT.Int64, is_primary_key=True)
    s.fields.add(name="vector", data_type=DT.FloatVector,
                 type_params=[common_pb2.KeyValuePair(key="dim", value=str(dim))])
    for f in extra or []:
        s.fields.append(f)
    return s


@pytest.mark.parametrize("name", ["c", "_c", "Products_2024", "a" * 255])
def test_valid_collection_names(name: str) -> None:
    ddlrules.validate_collection_name(name)


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("bad name; drop", "collection name can only contain numbers, letters and underscores"),
        ("1abc", "the first character of a collection name must be an underscore or letter"),
        ("a" * 256, "the length of a collection name must be less than 255 characters"),
        ("", "collection name should not be empty"),
        ("db/coll", "can only contain"),
        ("naïve", "can only contain"),
    ],
)
def test_invalid_collection_names(name: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as ei:
        ddlrules.validate_collection_name(name)
    assert fragment in ei.value.message
    assert ei.value.message.endswith(": invalid parameter")
    assert ei.value.milvus_code == 1100


def test_alias_messages_name_the_alias() -> None:
    with pytest.raises(InvalidArgument, match="Invalid collection alias: a 1"):
        ddlrules.validate_alias("a 1")


def test_database_names() -> None:
    ddlrules.validate_database_name("tenant_1")
    for bad in ("", "1x", "a b", "x" * 256):
        with pytest.raises(InvalidArgument) as ei:
            ddlrules.validate_database_name(bad)
        assert ei.value.milvus_code == 802
        assert f"invalid database name[database={bad}]" in ei.value.message


def test_partition_names_allow_digits_first_and_dashes() -> None:
    ddlrules.validate_partition_name("2024-01")
    ddlrules.validate_partition_name("_p")
    with pytest.raises(InvalidArgument, match="Partition name can only contain"):
        ddlrules.validate_partition_name("p 1")
    with pytest.raises(InvalidArgument, match="Partition name should not be empty"):
        ddlrules.validate_partition_name(" ")


def test_dimension_limits() -> None:
    ddlrules.validate_schema("c", _schema(32768))
    with pytest.raises(InvalidArgument, match=r"invalid dimension: 1000000 of field vector. float vector dimension should be in range 2 ~ 32768"):
        ddlrules.validate_schema("c", _schema(1_000_000))
    with pytest.raises(InvalidArgument, match=r"invalid dimension: 1. should be in range 2 ~ 32768"):
        ddlrules.validate_schema("c", _schema(1))
    binary = schema_pb2.FieldSchema(name="b", data_type=DT.BinaryVector,
                                    type_params=[common_pb2.KeyValuePair(key="dim", value="12")])
    with pytest.raises(InvalidArgument, match="multiple of 8"):
        ddlrules.validate_schema("c", _schema(8, [binary]))


def test_schema_rules() -> None:
    too_many = [schema_pb2.FieldSchema(name=f"f{i}", data_type=DT.Int64) for i in range(63)]
    with pytest.raises(InvalidArgument, match="maximum field's number should be limited to 64"):
        ddlrules.validate_schema("c", _schema(8, too_many))
    dup = schema_pb2.FieldSchema(name="vector", data_type=DT.Int64)
    with pytest.raises(InvalidArgument, match="duplicated field name vector found"):
        ddlrules.validate_schema("c", _schema(8, [dup]))
    no_len = schema_pb2.FieldSchema(name="s", data_type=DT.VarChar)
    with pytest.raises(InvalidArgument, match=r"type param\(max_length\) should be specified for the field\(s\)"):
        ddlrules.validate_schema("c", _schema(8, [no_len]))
    long = schema_pb2.FieldSchema(name="s", data_type=DT.VarChar,
                                  type_params=[common_pb2.KeyValuePair(key="max_length", value="70000")])
    with pytest.raises(InvalidArgument, match=r"should be in \(0, 65535\], but got 70000"):
        ddlrules.validate_schema("c", _schema(8, [long]))
    with pytest.raises(InvalidArgument, match="maximum shards's number should be limited to 16"):
        ddlrules.validate_schema("c", _schema(), shards_num=17)
    bad_field = schema_pb2.FieldSchema(name="not", data_type=DT.Int64)
    with pytest.raises(InvalidArgument, match="not is keyword in milvus"):
        ddlrules.validate_schema("c", _schema(8, [bad_field]))


@given(st.text(min_size=1, max_size=40))
@settings(max_examples=200)
def test_name_rule_matches_the_regex(name: str) -> None:
    import re

    ok = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,254}", name.strip()) is not None
    try:
        ddlrules.validate_collection_name(name)
        accepted = True
    except InvalidArgument:
        accepted = False
    assert accepted == ok


@given(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,30}", fullmatch=True),
       st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,30}", fullmatch=True))
@settings(max_examples=100)
def test_collection_keys_round_trip(db: str, name: str) -> None:
    key = collection_key(db, name)
    assert split_key(key) == (db, name)
    assert collection_key("default", name) == name  # the layout from before databases


def test_synthetic_ids_are_stable_and_distinct() -> None:
    a, b = synthetic_id("p", "c", "p1"), synthetic_id("p", "c", "p2")
    assert a == synthetic_id("p", "c", "p1") and a != b and a > 0 and b > 0
