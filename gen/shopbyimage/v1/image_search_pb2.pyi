from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Box(_message.Message):
    __slots__ = ("x0", "y0", "x1", "y1")
    X0_FIELD_NUMBER: _ClassVar[int]
    Y0_FIELD_NUMBER: _ClassVar[int]
    X1_FIELD_NUMBER: _ClassVar[int]
    Y1_FIELD_NUMBER: _ClassVar[int]
    x0: float
    y0: float
    x1: float
    y1: float
    def __init__(self, x0: _Optional[float] = ..., y0: _Optional[float] = ..., x1: _Optional[float] = ..., y1: _Optional[float] = ...) -> None: ...

class ProductMatch(_message.Message):
    __slots__ = ("product_id", "image_id", "score")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    image_id: int
    score: float
    def __init__(self, product_id: _Optional[str] = ..., image_id: _Optional[int] = ..., score: _Optional[float] = ...) -> None: ...

class DetectedObject(_message.Message):
    __slots__ = ("box", "label", "score", "matches")
    BOX_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    box: Box
    label: str
    score: float
    matches: _containers.RepeatedCompositeFieldContainer[ProductMatch]
    def __init__(self, box: _Optional[_Union[Box, _Mapping]] = ..., label: _Optional[str] = ..., score: _Optional[float] = ..., matches: _Optional[_Iterable[_Union[ProductMatch, _Mapping]]] = ...) -> None: ...

class SearchByImageRequest(_message.Message):
    __slots__ = ("image", "collection", "top_k", "filter", "max_objects")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    MAX_OBJECTS_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    collection: str
    top_k: int
    filter: str
    max_objects: int
    def __init__(self, image: _Optional[bytes] = ..., collection: _Optional[str] = ..., top_k: _Optional[int] = ..., filter: _Optional[str] = ..., max_objects: _Optional[int] = ...) -> None: ...

class SearchByImageResponse(_message.Message):
    __slots__ = ("objects", "model_id", "width", "height", "timings_ms")
    class TimingsMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_MS_FIELD_NUMBER: _ClassVar[int]
    objects: _containers.RepeatedCompositeFieldContainer[DetectedObject]
    model_id: str
    width: int
    height: int
    timings_ms: _containers.ScalarMap[str, float]
    def __init__(self, objects: _Optional[_Iterable[_Union[DetectedObject, _Mapping]]] = ..., model_id: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., timings_ms: _Optional[_Mapping[str, float]] = ...) -> None: ...
