from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NodeState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NODE_STATE_UNSPECIFIED: _ClassVar[NodeState]
    NODE_STATE_ACTIVE: _ClassVar[NodeState]
    NODE_STATE_JOINING: _ClassVar[NodeState]
    NODE_STATE_DRAINING: _ClassVar[NodeState]
    NODE_STATE_DRAINED: _ClassVar[NodeState]
    NODE_STATE_DOWN: _ClassVar[NodeState]
    NODE_STATE_SPARE: _ClassVar[NodeState]
NODE_STATE_UNSPECIFIED: NodeState
NODE_STATE_ACTIVE: NodeState
NODE_STATE_JOINING: NodeState
NODE_STATE_DRAINING: NodeState
NODE_STATE_DRAINED: NodeState
NODE_STATE_DOWN: NodeState
NODE_STATE_SPARE: NodeState

class Node(_message.Message):
    __slots__ = ("id", "address", "state", "weight")
    ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    id: str
    address: str
    state: NodeState
    weight: int
    def __init__(self, id: _Optional[str] = ..., address: _Optional[str] = ..., state: _Optional[_Union[NodeState, str]] = ..., weight: _Optional[int] = ...) -> None: ...

class AddNodeRequest(_message.Message):
    __slots__ = ("address", "weight", "id", "spare")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    SPARE_FIELD_NUMBER: _ClassVar[int]
    address: str
    weight: int
    id: str
    spare: bool
    def __init__(self, address: _Optional[str] = ..., weight: _Optional[int] = ..., id: _Optional[str] = ..., spare: _Optional[bool] = ...) -> None: ...

class AddNodeResponse(_message.Message):
    __slots__ = ("node", "ring_epoch", "moving")
    NODE_FIELD_NUMBER: _ClassVar[int]
    RING_EPOCH_FIELD_NUMBER: _ClassVar[int]
    MOVING_FIELD_NUMBER: _ClassVar[int]
    node: Node
    ring_epoch: int
    moving: bool
    def __init__(self, node: _Optional[_Union[Node, _Mapping]] = ..., ring_epoch: _Optional[int] = ..., moving: _Optional[bool] = ...) -> None: ...

class ListNodesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("nodes", "ring_epoch")
    NODES_FIELD_NUMBER: _ClassVar[int]
    RING_EPOCH_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    ring_epoch: int
    def __init__(self, nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ..., ring_epoch: _Optional[int] = ...) -> None: ...

class DrainNodeRequest(_message.Message):
    __slots__ = ("node_id",)
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    def __init__(self, node_id: _Optional[str] = ...) -> None: ...

class DrainNodeResponse(_message.Message):
    __slots__ = ("node", "ring_epoch")
    NODE_FIELD_NUMBER: _ClassVar[int]
    RING_EPOCH_FIELD_NUMBER: _ClassVar[int]
    node: Node
    ring_epoch: int
    def __init__(self, node: _Optional[_Union[Node, _Mapping]] = ..., ring_epoch: _Optional[int] = ...) -> None: ...

class RemoveNodeRequest(_message.Message):
    __slots__ = ("node_id",)
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    def __init__(self, node_id: _Optional[str] = ...) -> None: ...

class RemoveNodeResponse(_message.Message):
    __slots__ = ("ring_epoch",)
    RING_EPOCH_FIELD_NUMBER: _ClassVar[int]
    ring_epoch: int
    def __init__(self, ring_epoch: _Optional[int] = ...) -> None: ...

class CollectionNodeRows(_message.Message):
    __slots__ = ("node_id", "rows", "reachable")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    REACHABLE_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    rows: int
    reachable: bool
    def __init__(self, node_id: _Optional[str] = ..., rows: _Optional[int] = ..., reachable: _Optional[bool] = ...) -> None: ...

class CollectionStatus(_message.Message):
    __slots__ = ("name", "total_rows", "nodes", "dimension", "metric_type", "auto_id", "properties")
    class PropertiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOTAL_ROWS_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    METRIC_TYPE_FIELD_NUMBER: _ClassVar[int]
    AUTO_ID_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    name: str
    total_rows: int
    nodes: _containers.RepeatedCompositeFieldContainer[CollectionNodeRows]
    dimension: int
    metric_type: str
    auto_id: bool
    properties: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., total_rows: _Optional[int] = ..., nodes: _Optional[_Iterable[_Union[CollectionNodeRows, _Mapping]]] = ..., dimension: _Optional[int] = ..., metric_type: _Optional[str] = ..., auto_id: _Optional[bool] = ..., properties: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ClusterStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ClusterStatusResponse(_message.Message):
    __slots__ = ("nodes", "ring_epoch", "collections")
    NODES_FIELD_NUMBER: _ClassVar[int]
    RING_EPOCH_FIELD_NUMBER: _ClassVar[int]
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    ring_epoch: int
    collections: _containers.RepeatedCompositeFieldContainer[CollectionStatus]
    def __init__(self, nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ..., ring_epoch: _Optional[int] = ..., collections: _Optional[_Iterable[_Union[CollectionStatus, _Mapping]]] = ...) -> None: ...

class RebalanceStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RebalanceCursor(_message.Message):
    __slots__ = ("collection", "source_node", "rows_scanned", "rows_moved", "done")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_NODE_FIELD_NUMBER: _ClassVar[int]
    ROWS_SCANNED_FIELD_NUMBER: _ClassVar[int]
    ROWS_MOVED_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    collection: str
    source_node: str
    rows_scanned: int
    rows_moved: int
    done: bool
    def __init__(self, collection: _Optional[str] = ..., source_node: _Optional[str] = ..., rows_scanned: _Optional[int] = ..., rows_moved: _Optional[int] = ..., done: _Optional[bool] = ...) -> None: ...

class RebalanceStatusResponse(_message.Message):
    __slots__ = ("active", "target_epoch", "rows_moved", "rows_to_move", "rows_per_second", "cursors", "kind", "node_id", "state", "eta_seconds", "migrator_running", "migrator_pid", "started_at", "finished_at", "aborted_kind", "aborted_rows_moved")
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    TARGET_EPOCH_FIELD_NUMBER: _ClassVar[int]
    ROWS_MOVED_FIELD_NUMBER: _ClassVar[int]
    ROWS_TO_MOVE_FIELD_NUMBER: _ClassVar[int]
    ROWS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    CURSORS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MIGRATOR_RUNNING_FIELD_NUMBER: _ClassVar[int]
    MIGRATOR_PID_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    ABORTED_KIND_FIELD_NUMBER: _ClassVar[int]
    ABORTED_ROWS_MOVED_FIELD_NUMBER: _ClassVar[int]
    active: bool
    target_epoch: int
    rows_moved: int
    rows_to_move: int
    rows_per_second: float
    cursors: _containers.RepeatedCompositeFieldContainer[RebalanceCursor]
    kind: str
    node_id: str
    state: str
    eta_seconds: float
    migrator_running: bool
    migrator_pid: int
    started_at: float
    finished_at: float
    aborted_kind: str
    aborted_rows_moved: int
    def __init__(self, active: _Optional[bool] = ..., target_epoch: _Optional[int] = ..., rows_moved: _Optional[int] = ..., rows_to_move: _Optional[int] = ..., rows_per_second: _Optional[float] = ..., cursors: _Optional[_Iterable[_Union[RebalanceCursor, _Mapping]]] = ..., kind: _Optional[str] = ..., node_id: _Optional[str] = ..., state: _Optional[str] = ..., eta_seconds: _Optional[float] = ..., migrator_running: _Optional[bool] = ..., migrator_pid: _Optional[int] = ..., started_at: _Optional[float] = ..., finished_at: _Optional[float] = ..., aborted_kind: _Optional[str] = ..., aborted_rows_moved: _Optional[int] = ...) -> None: ...

class AbortRebalanceRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AbortRebalanceResponse(_message.Message):
    __slots__ = ("kind", "node_id", "ring_epoch", "target_epoch", "aborted_rows_moved")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    RING_EPOCH_FIELD_NUMBER: _ClassVar[int]
    TARGET_EPOCH_FIELD_NUMBER: _ClassVar[int]
    ABORTED_ROWS_MOVED_FIELD_NUMBER: _ClassVar[int]
    kind: str
    node_id: str
    ring_epoch: int
    target_epoch: int
    aborted_rows_moved: int
    def __init__(self, kind: _Optional[str] = ..., node_id: _Optional[str] = ..., ring_epoch: _Optional[int] = ..., target_epoch: _Optional[int] = ..., aborted_rows_moved: _Optional[int] = ...) -> None: ...

class ResumeRebalanceRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ResumeRebalanceResponse(_message.Message):
    __slots__ = ("started", "migrator_pid", "message")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    MIGRATOR_PID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    started: bool
    migrator_pid: int
    message: str
    def __init__(self, started: _Optional[bool] = ..., migrator_pid: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...
