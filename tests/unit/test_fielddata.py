"""Column take/concat round trips over the Milvus FieldData types the proxy routes."""

from __future__ import annotations

import json

import numpy as np
from pymilvus.grpc_gen import schema_pb2

from shardproxy import fielddata

DT = schema_pb2.DataType


def columns(n: int) -> list[schema_pb2.FieldData]:
    rng = np.random.default_rng(0)
    out = []
    pk = schema_pb2.FieldData(type=DT.Int64, field_name="id")
    pk.scalars.long_data.data.extend(range(n))
    out.append(pk)
    s = schema_pb2.FieldData(type=DT.VarChar, field_name="name")
    s.scalars.string_data.data.extend(f"n{i}" for i in range(n))
    out.append(s)
    f = schema_pb2.FieldData(type=DT.Double, field_name="price")
    f.scalars.double_data.data.extend(float(i) / 2 for i in range(n))
    out.append(f)
    b = schema_pb2.FieldData(type=DT.Bool, field_name="flag")
    b.scalars.bool_data.data.extend(i % 2 == 0 for i in range(n))
    out.append(b)
    j = schema_pb2.FieldData(type=DT.JSON, field_name="$meta", is_dynamic=True)
    j.scalars.json_data.data.extend(json.dumps({"k": i}).encode() for i in range(n))
    out.append(j)
    v = schema_pb2.FieldData(type=DT.FloatVector, field_name="vec")
    v.vectors.dim = 4
    v.vectors.float_vector.data.extend(rng.random(n * 4).astype(np.float32).tolist())
    out.append(v)
    bv = schema_pb2.FieldData(type=DT.BinaryVector, field_name="bits")
    bv.vectors.dim = 16
    bv.vectors.binary_vector = bytes(range(2 * n))
    out.append(bv)
    nullable = schema_pb2.FieldData(type=DT.Int64, field_name="maybe")
    nullable.valid_data.extend(i % 3 != 0 for i in range(n))
    nullable.scalars.long_data.data.extend(i if i % 3 else 0 for i in range(n))
    out.append(nullable)
    return out


def values(fd: schema_pb2.FieldData) -> list:
    if fd.type == DT.FloatVector:
        return fielddata.float_vectors(fd).tolist()
    if fd.type == DT.BinaryVector:
        return list(fd.vectors.binary_vector)
    return fielddata.column_values(fd)


def test_num_rows_of_every_type() -> None:
    for fd in columns(7):
        assert fielddata.num_rows(fd) == 7, fd.field_name


def test_take_then_concat_restores_permuted_rows() -> None:
    cols = columns(10)
    rows_a, rows_b = [3, 0, 7], [9, 1, 2, 4, 5, 6, 8]
    for fd in cols:
        whole = fielddata.concat([fielddata.take(fd, rows_a), fielddata.take(fd, rows_b)])
        assert fielddata.num_rows(whole) == 10
        perm = rows_a + rows_b
        if fd.type == DT.BinaryVector:
            src = np.frombuffer(fd.vectors.binary_vector, dtype=np.uint8).reshape(-1, 2)
            assert whole.vectors.binary_vector == src[perm].tobytes()
        else:
            assert values(whole) == [values(fd)[i] for i in perm], fd.field_name
        if len(fd.valid_data):
            assert list(whole.valid_data) == [fd.valid_data[i] for i in perm]


def test_take_keeps_field_identity() -> None:
    for fd in columns(4):
        t = fielddata.take(fd, [1])
        assert (t.field_name, t.type, t.is_dynamic) == (fd.field_name, fd.type, fd.is_dynamic)
