"""The metadata records (pure data, no I/O): node states, a node's record, and a collection's
record with the schema helpers every layer uses (primary key, vector fields, metrics, the
request nodes are created with). :mod:`shardproxy.metastore` stores them in Redis."""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field
from functools import cached_property

from pymilvus.grpc_gen import milvus_pb2, schema_pb2

from shardproxy.catalog import DEFAULT_DB, collection_key

class NodeState(str, enum.Enum):
    ACTIVE = "active"
    JOINING = "joining"
    DRAINING = "draining"
    DRAINED = "drained"
    DOWN = "down"
    SPARE = "spare"


# States whose nodes own keys on the ring, and states whose nodes are searched.
RING_STATES = frozenset({NodeState.ACTIVE, NodeState.DOWN})
SEARCH_STATES = frozenset({NodeState.ACTIVE, NodeState.JOINING, NodeState.DRAINING, NodeState.DOWN})


@dataclass
class NodeRecord:
    id: str
    address: str
    weight: int = 1
    state: NodeState = NodeState.ACTIVE

    def to_json(self) -> str:
        d = asdict(self)
        d["state"] = self.state.value
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | bytes) -> "NodeRecord":
        d = json.loads(raw)
        return cls(id=d["id"], address=d["address"], weight=int(d.get("weight", 1)), state=NodeState(d["state"]))


@dataclass
class CollectionRecord:
    """What the proxy remembers about a collection, enough to recreate it on any node."""

    name: str  # the bare collection name (what nodes and clients see)
    create: milvus_pb2.CreateCollectionRequest
    indexes: dict[str, milvus_pb2.CreateIndexRequest] = field(default_factory=dict)
    loaded: bool = False
    load: milvus_pb2.LoadCollectionRequest | None = None
    replicas: int = 1  # R: each key lives on R distinct successive ring nodes
    write_ack: str = "quorum"  # one | quorum (R // 2 + 1) | all: copies a row needs, stand-ins counted
    db: str = DEFAULT_DB
    partitions: list[str] = field(default_factory=list)  # created by the user, in creation order
    loaded_partitions: list[str] = field(default_factory=list)  # loaded on their own (not the collection)
    props: dict[str, str] | None = None  # properties set by AlterCollection (None: as created)
    created_at: float = 0.0

    @property
    def key(self) -> str:
        """The collection's id in Redis keys (:func:`shardproxy.catalog.collection_key`)."""
        return collection_key(self.db, self.name)

    @property
    def properties(self) -> dict[str, str]:
        """Current collection properties: as created, then as altered."""
        if self.props is not None:
            return dict(self.props)
        return {p.key: p.value for p in self.create.properties}

    @property
    def partition_key(self) -> str | None:
        return next((f.name for f in self.schema.fields if f.is_partition_key), None)

    @property
    def acks_needed(self) -> int:
        return {"one": 1, "all": self.replicas}.get(self.write_ack, self.replicas // 2 + 1)

    @cached_property
    def schema(self) -> schema_pb2.CollectionSchema:
        s = schema_pb2.CollectionSchema()
        s.ParseFromString(self.create.schema)
        return s

    @cached_property
    def node_create(self) -> milvus_pb2.CreateCollectionRequest:
        """The CreateCollection request sent to nodes: auto_id is switched off there, because the
        proxy assigns ids itself so that rows are routed by key."""
        if not self.auto_id:
            if self.create.db_name == self.db:
                return self.create
            req = milvus_pb2.CreateCollectionRequest()
            req.CopyFrom(self.create)
            req.db_name = self.db
            return req
        schema = schema_pb2.CollectionSchema()
        schema.CopyFrom(self.schema)
        schema.autoID = False
        for f in schema.fields:
            if f.is_primary_key:
                f.autoID = False
        req = milvus_pb2.CreateCollectionRequest()
        req.CopyFrom(self.create)
        req.db_name = self.db
        req.schema = schema.SerializeToString()
        return req

    @property
    def pk_field(self) -> schema_pb2.FieldSchema:
        for f in self.schema.fields:
            if f.is_primary_key:
                return f
        raise ValueError(f"collection {self.name} has no primary key")

    @property
    def pk_name(self) -> str:
        return self.pk_field.name

    @property
    def pk_is_str(self) -> bool:
        return self.pk_field.data_type == schema_pb2.DataType.VarChar

    @property
    def auto_id(self) -> bool:
        return bool(self.pk_field.autoID or self.schema.autoID)

    @property
    def dynamic(self) -> bool:
        return bool(self.schema.enable_dynamic_field)

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.schema.fields]

    @property
    def field_types(self) -> dict[str, int]:
        return {f.name: f.data_type for f in self.schema.fields}

    def field(self, name: str) -> schema_pb2.FieldSchema | None:
        return next((f for f in self.schema.fields if f.name == name), None)

    @property
    def vector_fields(self) -> dict[str, schema_pb2.FieldSchema]:
        return {
            f.name: f
            for f in self.schema.fields
            if f.data_type
            in (
                schema_pb2.DataType.FloatVector,
                schema_pb2.DataType.BinaryVector,
                schema_pb2.DataType.Float16Vector,
                schema_pb2.DataType.BFloat16Vector,
                schema_pb2.DataType.SparseFloatVector,
                schema_pb2.DataType.Int8Vector,
            )
        }

    def dim(self, field_name: str) -> int:
        f = self.vector_fields[field_name]
        for kv in f.type_params:
            if kv.key == "dim":
                return int(kv.value)
        return 0

    def metric(self, field_name: str | None = None) -> str:
        """Metric of the vector field's index ("" when unknown)."""
        names = [field_name] if field_name else list(self.vector_fields)
        for name in names:
            req = self.indexes.get(name)
            if req is None:
                continue
            for kv in req.extra_params:
                if kv.key == "metric_type":
                    return kv.value.upper()
        return ""

    def default_vector_field(self) -> str:
        vf = list(self.vector_fields)
        if not vf:
            raise ValueError(f"collection {self.name} has no vector field")
        return vf[0]
