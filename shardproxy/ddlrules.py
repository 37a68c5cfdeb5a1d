"""Milvus's rules for names, schemas and catalog limits, as pure functions.

Requests Milvus would refuse are refused the same way by the proxy, before any node sees them:
the same conditions, the same messages and the same code (1100, ``ParameterInvalid``) as
Milvus's proxy (``internal/proxy/util.go``: ``validateCollectionNameOrAlias``,
``validateDatabaseName``, ``validatePartitionTag``, ``validateFieldName``, ``validateDimension``,
``validateMaxLengthPerRow``; limits from ``paramtable``). The messages were checked against a
milvus-lite node (tests/test_catalog_congruence.py compares them).
"""

from __future__ import annotations

from pymilvus.grpc_gen import schema_pb2

from shardproxy.errors import InvalidArgument

MAX_NAME_LENGTH = 255  # proxy.maxNameLength
MAX_FIELD_NUM = 64  # proxy.maxFieldNum
MAX_VECTOR_FIELD_NUM = 4  # proxy.maxVectorFieldNum
MAX_SHARD_NUM = 16  # proxy.maxShardNum
MAX_DIMENSION = 32768  # proxy.maxDimension
MAX_VARCHAR_LENGTH = 65535  # proxy.maxVarCharLength
MAX_ARRAY_CAPACITY = 4096  # proxy.maxArrayCapacity
MAX_PARTITION_NUM = 1024  # rootCoord.maxPartitionNum
MAX_PARTITION_KEY_PARTITIONS = 1024

DT = schema_pb2.DataType
VECTOR_TYPES = frozenset(
    {DT.FloatVector, DT.BinaryVector, DT.Float16Vector, DT.BFloat16Vector, DT.SparseFloatVector, DT.Int8Vector}
)
FIELD_KEYWORDS = frozenset({"$meta", "like", "not", "and", "or", "in", "is", "null", "exists", "true", "false"})


class ParameterInvalid(InvalidArgument):
    """Milvus's ``ErrParameterInvalid``: the message ends in ``: invalid parameter``."""

    def __init__(self, message: str) -> None:
        super().__init__(f"{message}: invalid parameter")


def _alpha(c: str) -> bool:
    return ("a" <= c <= "z") or ("A" <= c <= "Z")


def _ident_error(name: str, what: str, noun: str, *, strip: bool = True) -> str | None:
    """The shared name rule: not empty, at most 255 characters, a letter or ``_`` first, then
    letters, digits and ``_``. Returns the message tail, or None when the name is valid."""
    entity = name.strip() if strip else name
    if entity == "":
        return f"{noun} {what} should not be empty"
    if len(entity) > MAX_NAME_LENGTH:
        return f"the length of a {noun} {what} must be less than {MAX_NAME_LENGTH} characters"
    if entity[0] != "_" and not _alpha(entity[0]):
        return f"the first character of a {noun} {what} must be an underscore or letter"
    for c in entity[1:]:
        if c != "_" and not _alpha(c) and not c.isdigit() or not c.isascii():
            return f"{noun} {what} can only contain numbers, letters and underscores"
    return None


def validate_collection_name(name: str, what: str = "name") -> None:
    """``validateCollectionNameOrAlias`` (``what`` is "name" or "alias")."""
    err = _ident_error(name, what, "collection")
    if err is None:
        return
    if name.strip() == "":
        raise ParameterInvalid(err)
    raise ParameterInvalid(f"Invalid collection {what}: {name.strip()}. {err}")


def validate_alias(alias: str) -> None:
    validate_collection_name(alias, "alias")


def validate_database_name(name: str) -> None:
    """``validateDatabaseName``: code 802 (``ErrDatabaseInvalidName``) in Milvus."""
    if name == "":
        raise DatabaseNameInvalid(name, "database name couldn't be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise DatabaseNameInvalid(name, f"the length of a database name must be less than {MAX_NAME_LENGTH} characters")
    if name[0] != "_" and not _alpha(name[0]):
        raise DatabaseNameInvalid(name, "the first character of a database name must be an underscore or letter")
    for c in name[1:]:
        if (c != "_" and not _alpha(c) and not c.isdigit()) or not c.isascii():
            raise DatabaseNameInvalid(name, "database name can only contain numbers, letters and underscores")


class DatabaseNameInvalid(InvalidArgument):
    milvus_code = 802

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"invalid database name[database={name}]: {reason}")


def validate_partition_name(name: str) -> None:
    """``validatePartitionTag`` (strict)."""
    tag = name.strip()
    invalid = f"Invalid partition name: {tag}. "
    if tag == "":
        raise ParameterInvalid(invalid + "Partition name should not be empty.")
    if len(tag) > MAX_NAME_LENGTH:
        raise ParameterInvalid(invalid + f"The length of a partition name must be less than {MAX_NAME_LENGTH} characters.")
    if tag[0] != "_" and not _alpha(tag[0]) and not tag[0].isdigit() or not tag[0].isascii():
        raise ParameterInvalid(invalid + "The first character of a partition name must be an underscore or letter.")
    for c in tag[1:]:
        if (c not in "_-" and not _alpha(c) and not c.isdigit()) or not c.isascii():
            raise ParameterInvalid(invalid + "Partition name can only contain numbers, letters and underscores.")


def validate_field_name(name: str) -> None:
    """``validateFieldName``."""
    fname = name.strip()
    if fname == "":
        raise ParameterInvalid(f"field name invalid[field={fname}]: field name should not be empty")
    invalid = f"Invalid field name: {fname}. "
    reason = None
    if len(fname) > MAX_NAME_LENGTH:
        reason = f"The length of a field name must be less than {MAX_NAME_LENGTH} characters."
    elif fname[0] != "_" and not _alpha(fname[0]):
        reason = "The first character of a field name must be an underscore or letter."
    elif any((c != "_" and not _alpha(c) and not c.isdigit()) or not c.isascii() for c in fname[1:]):
        reason = "Field name can only contain numbers, letters, and underscores."
    elif fname.lower() in FIELD_KEYWORDS:
        reason = f"{fname} is keyword in milvus."
    if reason:
        raise ParameterInvalid(f"field name invalid[field={fname}]: {invalid}{reason}")


def _param(field: schema_pb2.FieldSchema, key: str) -> str | None:
    return next((kv.value for kv in field.type_params if kv.key == key), None)


def validate_dimension(field: schema_pb2.FieldSchema) -> None:
    """``validateDimension``."""
    raw = _param(field, "dim")
    if field.data_type == DT.SparseFloatVector:
        if raw is not None:
            raise ParameterInvalid(f"dim should not be specified for sparse vector field {field.name}({field.fieldID})")
        return
    if raw is None:
        raise ParameterInvalid(
            f"dimension is not defined in field type params of field {field.name}, check type param `dim` for vector field"
        )
    try:
        dim = int(raw)
    except ValueError as exc:
        raise ParameterInvalid(f"dimension of field {field.name} must be an integer, got {raw!r}") from exc
    if dim <= 1:
        raise ParameterInvalid(f"invalid dimension: {dim}. should be in range 2 ~ {MAX_DIMENSION}")
    if field.data_type == DT.BinaryVector:
        if dim % 8:
            raise ParameterInvalid(
                f"invalid dimension: {dim} of field {field.name}. binary vector dimension should be multiple of 8. "
            )
        if dim > MAX_DIMENSION * 8:
            raise ParameterInvalid(
                f"invalid dimension: {dim} of field {field.name}. binary vector dimension should be in range 2 ~ {MAX_DIMENSION * 8}"
            )
    elif dim > MAX_DIMENSION:
        raise ParameterInvalid(
            f"invalid dimension: {dim} of field {field.name}. float vector dimension should be in range 2 ~ {MAX_DIMENSION}"
        )


def validate_max_length(collection: str, field: schema_pb2.FieldSchema) -> None:
    raw = _param(field, "max_length")
    if raw is None:
        raise ParameterInvalid(
            f"type param(max_length) should be specified for the field({field.name}) of collection {collection}"
        )
    n = int(raw)
    if n > MAX_VARCHAR_LENGTH or n <= 0:
        raise ParameterInvalid(
            f"the maximum length specified for the field({field.name}) should be in (0, {MAX_VARCHAR_LENGTH}], but got {n} instead"
        )


def validate_array(collection: str, field: schema_pb2.FieldSchema) -> None:
    if field.element_type == DT.VarChar:
        validate_max_length(collection, field)
    raw = _param(field, "max_capacity")
    if raw is None:
        raise ParameterInvalid(
            f"type param(max_capacity) should be specified for array field {field.name} of collection {collection}"
        )
    n = int(raw)
    if n > MAX_ARRAY_CAPACITY or n <= 0:
        raise ParameterInvalid(f"the maximum capacity specified for a Array should be in (0, {MAX_ARRAY_CAPACITY}]")


def validate_schema(collection: str, schema: schema_pb2.CollectionSchema, shards_num: int = 0, num_partitions: int = 0) -> None:
    """The checks Milvus's proxy makes on CreateCollection, in its order."""
    validate_collection_name(collection)
    if shards_num > MAX_SHARD_NUM:
        raise ParameterInvalid(f"maximum shards's number should be limited to {MAX_SHARD_NUM}")
    fields = list(schema.fields)
    if len(fields) > MAX_FIELD_NUM:
        raise ParameterInvalid(f"maximum field's number should be limited to {MAX_FIELD_NUM}")
    n_vec = sum(1 for f in fields if f.data_type in VECTOR_TYPES)
    if n_vec > MAX_VECTOR_FIELD_NUM:
        raise ParameterInvalid(f"maximum vector field's number should be limited to {MAX_VECTOR_FIELD_NUM}")
    if n_vec == 0:
        raise ParameterInvalid("schema does not contain vector field")
    seen: set[str] = set()
    for f in fields:
        if f.name in seen:
            raise ParameterInvalid(f"duplicated field name {f.name} found")
        seen.add(f.name)
    pks = [f for f in fields if f.is_primary_key]
    if not pks:
        raise ParameterInvalid("primary key is not specified")
    if len(pks) > 1:
        raise ParameterInvalid(f"there are more than one primary key, field name = {pks[0].name}, {pks[1].name}")
    if pks[0].data_type not in (DT.Int64, DT.VarChar):
        raise ParameterInvalid("only int64 and varchar types are supported as primary key, "
                               f"but got {DT.Name(pks[0].data_type).lower()}")
    pkeys = [f for f in fields if f.is_partition_key]
    if len(pkeys) > 1:
        raise ParameterInvalid("there are more than one partition key, "
                               f"field name = {pkeys[0].name}, {pkeys[1].name}")
    if num_partitions > MAX_PARTITION_KEY_PARTITIONS:
        raise ParameterInvalid(f"partition number ({num_partitions}) exceeds max configuration "
                               f"({MAX_PARTITION_KEY_PARTITIONS}), collection: {collection}")
    for f in fields:
        validate_field_name(f.name)
        if f.data_type in VECTOR_TYPES:
            validate_dimension(f)
        if f.data_type == DT.VarChar:
            validate_max_length(collection, f)
        if f.data_type == DT.Array:
            validate_array(collection, f)
