"""Row-level operations over Milvus columnar ``FieldData`` protobufs: count, take, concatenate.

The insert path splits one request's columns by owner node; the merge path gathers the winning
rows of several shards into one result. Pure functions over protobuf messages; no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pymilvus.grpc_gen import schema_pb2

DataType = schema_pb2.DataType

_SCALAR_ATTR = {
    DataType.Bool: "bool_data",
    DataType.Int8: "int_data",
    DataType.Int16: "int_data",
    DataType.Int32: "int_data",
    DataType.Int64: "long_data",
    DataType.Float: "float_data",
    DataType.Double: "double_data",
    DataType.String: "string_data",
    DataType.VarChar: "string_data",
    DataType.JSON: "json_data",
    DataType.Array: "array_data",
}
# Vector types stored as one bytes blob: bytes per row = dim * factor.
_BYTES_VECTOR = {
    DataType.BinaryVector: ("binary_vector", 1 / 8),
    DataType.Float16Vector: ("float16_vector", 2),
    DataType.BFloat16Vector: ("bfloat16_vector", 2),
    DataType.Int8Vector: ("int8_vector", 1),
}


def _scalar_attr(fd: schema_pb2.FieldData) -> str:
    if fd.type in _SCALAR_ATTR:
        return _SCALAR_ATTR[fd.type]
    which = fd.scalars.WhichOneof("data")
    if which is None:
        raise ValueError(f"field {fd.field_name!r}: unsupported data type {fd.type}")
    return which


def is_vector(fd: schema_pb2.FieldData) -> bool:
    return fd.WhichOneof("field") == "vectors"


def num_rows(fd: schema_pb2.FieldData) -> int:
    """Number of rows in one column (nullable columns count their validity mask)."""
    if len(fd.valid_data):
        return len(fd.valid_data)
    return _data_len(fd)


def _data_len(fd: schema_pb2.FieldData) -> int:
    """Number of values actually stored (nullable columns may store valid rows only)."""
    if is_vector(fd):
        v = fd.vectors
        if fd.type == DataType.FloatVector:
            return len(v.float_vector.data) // max(1, v.dim)
        if fd.type == DataType.SparseFloatVector:
            return len(v.sparse_float_vector.contents)
        if fd.type in _BYTES_VECTOR:
            attr, factor = _BYTES_VECTOR[fd.type]
            return int(len(getattr(v, attr)) // max(1, int(v.dim * factor)))
        raise ValueError(f"field {fd.field_name!r}: unsupported vector type {fd.type}")
    if fd.WhichOneof("field") is None:
        return 0
    return len(getattr(fd.scalars, _scalar_attr(fd)).data)


def float_vectors(fd: schema_pb2.FieldData) -> np.ndarray:
    """A float-vector column as an (n, dim) float32 array."""
    dim = max(1, fd.vectors.dim)
    arr = np.asarray(fd.vectors.float_vector.data, dtype=np.float32)
    return arr.reshape(-1, dim)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def set_float_vectors(fd: schema_pb2.FieldData, matrix: np.ndarray) -> None:
    """Fill a float-vector column from an (n, dim) array without a Python float list: the packed
    ``FloatArray.data`` wire form is just the little-endian float32 bytes behind a length."""
    raw = np.ascontiguousarray(matrix, dtype="<f4").tobytes()
    fd.vectors.float_vector.ParseFromString(b"\x0a" + _varint(len(raw)) + raw if raw else b"")


def _empty_like(fd: schema_pb2.FieldData) -> schema_pb2.FieldData:
    out = schema_pb2.FieldData(
        type=fd.type, field_name=fd.field_name, field_id=fd.field_id, is_dynamic=fd.is_dynamic
    )
    if is_vector(fd):
        out.vectors.dim = fd.vectors.dim
        if fd.type == DataType.SparseFloatVector:
            out.vectors.sparse_float_vector.dim = fd.vectors.sparse_float_vector.dim
    elif fd.WhichOneof("field") == "scalars":
        attr = _scalar_attr(fd)
        getattr(out.scalars, attr).SetInParent()
        if attr == "array_data":
            out.scalars.array_data.element_type = fd.scalars.array_data.element_type
    return out


def _value_index(fd: schema_pb2.FieldData, rows: np.ndarray) -> np.ndarray:
    """Map row numbers to positions in the data array (nullable columns may store only valid rows)."""
    if not len(fd.valid_data):
        return rows
    valid = np.asarray(fd.valid_data, dtype=bool)
    data_len = _data_len(fd)
    if data_len == len(valid):
        return rows
    # Compact storage: data holds valid rows only.
    pos = np.cumsum(valid) - 1
    keep = valid[rows]
    return pos[rows[keep]]


def take(fd: schema_pb2.FieldData, rows: Sequence[int] | np.ndarray) -> schema_pb2.FieldData:
    """A new column holding the given rows of ``fd``, in the given order."""
    rows = np.asarray(rows, dtype=np.int64)
    out = _empty_like(fd)
    if fd.WhichOneof("field") is None:
        return out
    if len(fd.valid_data):
        valid = np.asarray(fd.valid_data, dtype=bool)
        out.valid_data.extend(valid[rows].tolist())
    vrows = _value_index(fd, rows)
    if is_vector(fd):
        v = fd.vectors
        if fd.type == DataType.FloatVector:
            set_float_vectors(out, float_vectors(fd)[vrows])
        elif fd.type == DataType.SparseFloatVector:
            contents = v.sparse_float_vector.contents
            out.vectors.sparse_float_vector.contents.extend([contents[int(i)] for i in vrows])
        elif fd.type in _BYTES_VECTOR:
            attr, factor = _BYTES_VECTOR[fd.type]
            width = int(v.dim * factor)
            blob = np.frombuffer(getattr(v, attr), dtype=np.uint8).reshape(-1, width)
            setattr(out.vectors, attr, blob[vrows].tobytes())
        else:
            raise ValueError(f"field {fd.field_name!r}: unsupported vector type {fd.type}")
        return out
    attr = _scalar_attr(fd)
    src = getattr(fd.scalars, attr).data
    dst = getattr(out.scalars, attr).data
    dst.extend([src[int(i)] for i in vrows])
    return out


def take_all(fields: Sequence[schema_pb2.FieldData], rows: Sequence[int] | np.ndarray) -> list[schema_pb2.FieldData]:
    return [take(fd, rows) for fd in fields]


def concat(columns: Sequence[schema_pb2.FieldData]) -> schema_pb2.FieldData:
    """Concatenate several pieces of the same column (same name and type)."""
    if not columns:
        raise ValueError("nothing to concatenate")
    first = columns[0]
    out = _empty_like(first)
    any_valid = any(len(c.valid_data) for c in columns)
    for c in columns:
        if c.WhichOneof("field") is None:
            continue
        if any_valid:
            n = num_rows(c)
            out.valid_data.extend(list(c.valid_data) if len(c.valid_data) else [True] * n)
        if is_vector(c):
            if c.type == DataType.FloatVector:
                out.vectors.float_vector.data.extend(c.vectors.float_vector.data)
            elif c.type == DataType.SparseFloatVector:
                out.vectors.sparse_float_vector.contents.extend(c.vectors.sparse_float_vector.contents)
            elif c.type in _BYTES_VECTOR:
                attr, _ = _BYTES_VECTOR[c.type]
                setattr(out.vectors, attr, getattr(out.vectors, attr) + getattr(c.vectors, attr))
        else:
            attr = _scalar_attr(c)
            getattr(out.scalars, attr).data.extend(getattr(c.scalars, attr).data)
    return out


def pk_values(ids: schema_pb2.IDs) -> list[int] | list[str]:
    if ids.WhichOneof("id_field") == "str_id":
        return list(ids.str_id.data)
    return list(ids.int_id.data)


def pk_column(fields: Sequence[schema_pb2.FieldData], pk_name: str) -> schema_pb2.FieldData | None:
    """The primary-key column of a row set (None when absent, e.g. auto_id inserts)."""
    return next((fd for fd in fields if fd.field_name == pk_name and not fd.is_dynamic), None)


def pk_column_values(fields: Sequence[schema_pb2.FieldData], pk_name: str) -> list:
    """The primary keys of a row set, in row order ([] when the column is absent)."""
    col = pk_column(fields, pk_name)
    return column_values(col) if col is not None else []


def column_values(fd: schema_pb2.FieldData) -> list:
    """Scalar column as a Python list (primary keys)."""
    return list(getattr(fd.scalars, _scalar_attr(fd)).data)


def make_ids(values: Sequence[int] | Sequence[str], is_str: bool) -> schema_pb2.IDs:
    ids = schema_pb2.IDs()
    if is_str:
        ids.str_id.data.extend(values)  # type: ignore[arg-type]
    else:
        ids.int_id.data.extend(values)  # type: ignore[arg-type]
    return ids
