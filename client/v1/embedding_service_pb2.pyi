# Generated from proto/ by scripts/gen_python.py. Do not edit.
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InputType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INPUT_TYPE_UNSPECIFIED: _ClassVar[InputType]
    INPUT_TYPE_QUERY: _ClassVar[InputType]
    INPUT_TYPE_DOCUMENT: _ClassVar[InputType]

class TruncationDirection(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRUNCATION_DIRECTION_UNSPECIFIED: _ClassVar[TruncationDirection]
    TRUNCATION_DIRECTION_RIGHT: _ClassVar[TruncationDirection]
    TRUNCATION_DIRECTION_LEFT: _ClassVar[TruncationDirection]

class Precision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRECISION_UNSPECIFIED: _ClassVar[Precision]
    PRECISION_FLOAT32: _ClassVar[Precision]
    PRECISION_INT8: _ClassVar[Precision]
    PRECISION_UINT8: _ClassVar[Precision]
    PRECISION_BINARY: _ClassVar[Precision]
    PRECISION_UBINARY: _ClassVar[Precision]

class VectorEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VECTOR_ENCODING_UNSPECIFIED: _ClassVar[VectorEncoding]
    VECTOR_ENCODING_NUMBERS: _ClassVar[VectorEncoding]
    VECTOR_ENCODING_BYTES: _ClassVar[VectorEncoding]

class Backend(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BACKEND_UNSPECIFIED: _ClassVar[Backend]
    BACKEND_TORCH: _ClassVar[Backend]
    BACKEND_ONNX: _ClassVar[Backend]
    BACKEND_OPENVINO: _ClassVar[Backend]
    BACKEND_CUSTOM: _ClassVar[Backend]

class Device(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEVICE_UNSPECIFIED: _ClassVar[Device]
    DEVICE_CPU: _ClassVar[Device]
    DEVICE_CUDA: _ClassVar[Device]

class SimilarityMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIMILARITY_MODE_UNSPECIFIED: _ClassVar[SimilarityMode]
    SIMILARITY_MODE_COSINE: _ClassVar[SimilarityMode]
    SIMILARITY_MODE_DOT_PRODUCT: _ClassVar[SimilarityMode]
    SIMILARITY_MODE_EUCLIDEAN: _ClassVar[SimilarityMode]
INPUT_TYPE_UNSPECIFIED: InputType
INPUT_TYPE_QUERY: InputType
INPUT_TYPE_DOCUMENT: InputType
TRUNCATION_DIRECTION_UNSPECIFIED: TruncationDirection
TRUNCATION_DIRECTION_RIGHT: TruncationDirection
TRUNCATION_DIRECTION_LEFT: TruncationDirection
PRECISION_UNSPECIFIED: Precision
PRECISION_FLOAT32: Precision
PRECISION_INT8: Precision
PRECISION_UINT8: Precision
PRECISION_BINARY: Precision
PRECISION_UBINARY: Precision
VECTOR_ENCODING_UNSPECIFIED: VectorEncoding
VECTOR_ENCODING_NUMBERS: VectorEncoding
VECTOR_ENCODING_BYTES: VectorEncoding
BACKEND_UNSPECIFIED: Backend
BACKEND_TORCH: Backend
BACKEND_ONNX: Backend
BACKEND_OPENVINO: Backend
BACKEND_CUSTOM: Backend
DEVICE_UNSPECIFIED: Device
DEVICE_CPU: Device
DEVICE_CUDA: Device
SIMILARITY_MODE_UNSPECIFIED: SimilarityMode
SIMILARITY_MODE_COSINE: SimilarityMode
SIMILARITY_MODE_DOT_PRODUCT: SimilarityMode
SIMILARITY_MODE_EUCLIDEAN: SimilarityMode

class ModelSelector(_message.Message):
    __slots__ = ("model", "variant", "backend", "device")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    model: str
    variant: str
    backend: Backend
    device: Device
    def __init__(self, model: _Optional[str] = ..., variant: _Optional[str] = ..., backend: _Optional[_Union[Backend, str]] = ..., device: _Optional[_Union[Device, str]] = ...) -> None: ...

class EmbedRequest(_message.Message):
    __slots__ = ("model", "inputs", "input_type", "prompt", "prompt_name", "normalize", "truncate", "truncation_direction", "dimensions", "precision", "encoding")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    INPUT_TYPE_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    PROMPT_NAME_FIELD_NUMBER: _ClassVar[int]
    NORMALIZE_FIELD_NUMBER: _ClassVar[int]
    TRUNCATE_FIELD_NUMBER: _ClassVar[int]
    TRUNCATION_DIRECTION_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    model: ModelSelector
    inputs: _containers.RepeatedScalarFieldContainer[str]
    input_type: InputType
    prompt: str
    prompt_name: str
    normalize: bool
    truncate: bool
    truncation_direction: TruncationDirection
    dimensions: int
    precision: Precision
    encoding: VectorEncoding
    def __init__(self, model: _Optional[_Union[ModelSelector, _Mapping]] = ..., inputs: _Optional[_Iterable[str]] = ..., input_type: _Optional[_Union[InputType, str]] = ..., prompt: _Optional[str] = ..., prompt_name: _Optional[str] = ..., normalize: _Optional[bool] = ..., truncate: _Optional[bool] = ..., truncation_direction: _Optional[_Union[TruncationDirection, str]] = ..., dimensions: _Optional[int] = ..., precision: _Optional[_Union[Precision, str]] = ..., encoding: _Optional[_Union[VectorEncoding, str]] = ...) -> None: ...

class Embedding(_message.Message):
    __slots__ = ("values", "int_values", "data")
    VALUES_FIELD_NUMBER: _ClassVar[int]
    INT_VALUES_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    int_values: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, values: _Optional[_Iterable[float]] = ..., int_values: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("input_tokens", "truncated_inputs")
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_INPUTS_FIELD_NUMBER: _ClassVar[int]
    input_tokens: int
    truncated_inputs: int
    def __init__(self, input_tokens: _Optional[int] = ..., truncated_inputs: _Optional[int] = ...) -> None: ...

class Timings(_message.Message):
    __slots__ = ("queue_ns", "inference_ns", "total_ns")
    QUEUE_NS_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_NS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_NS_FIELD_NUMBER: _ClassVar[int]
    queue_ns: int
    inference_ns: int
    total_ns: int
    def __init__(self, queue_ns: _Optional[int] = ..., inference_ns: _Optional[int] = ..., total_ns: _Optional[int] = ...) -> None: ...

class EmbedResponse(_message.Message):
    __slots__ = ("embeddings", "dimensions", "model", "variant", "precision", "usage", "timings")
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    embeddings: _containers.RepeatedCompositeFieldContainer[Embedding]
    dimensions: int
    model: str
    variant: str
    precision: Precision
    usage: Usage
    timings: Timings
    def __init__(self, embeddings: _Optional[_Iterable[_Union[Embedding, _Mapping]]] = ..., dimensions: _Optional[int] = ..., model: _Optional[str] = ..., variant: _Optional[str] = ..., precision: _Optional[_Union[Precision, str]] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ...) -> None: ...

class EmbedStreamRequest(_message.Message):
    __slots__ = ("request_id", "request")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    request: EmbedRequest
    def __init__(self, request_id: _Optional[str] = ..., request: _Optional[_Union[EmbedRequest, _Mapping]] = ...) -> None: ...

class ErrorStatus(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class EmbedStreamResponse(_message.Message):
    __slots__ = ("request_id", "response", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    response: EmbedResponse
    error: ErrorStatus
    def __init__(self, request_id: _Optional[str] = ..., response: _Optional[_Union[EmbedResponse, _Mapping]] = ..., error: _Optional[_Union[ErrorStatus, _Mapping]] = ...) -> None: ...

class Vector(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class SimilarityRequest(_message.Message):
    __slots__ = ("model", "queries", "documents", "query_vectors", "document_vectors", "mode", "top_k", "truncate", "dimensions")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    QUERY_VECTORS_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_VECTORS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    TRUNCATE_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    model: ModelSelector
    queries: _containers.RepeatedScalarFieldContainer[str]
    documents: _containers.RepeatedScalarFieldContainer[str]
    query_vectors: _containers.RepeatedCompositeFieldContainer[Vector]
    document_vectors: _containers.RepeatedCompositeFieldContainer[Vector]
    mode: SimilarityMode
    top_k: int
    truncate: bool
    dimensions: int
    def __init__(self, model: _Optional[_Union[ModelSelector, _Mapping]] = ..., queries: _Optional[_Iterable[str]] = ..., documents: _Optional[_Iterable[str]] = ..., query_vectors: _Optional[_Iterable[_Union[Vector, _Mapping]]] = ..., document_vectors: _Optional[_Iterable[_Union[Vector, _Mapping]]] = ..., mode: _Optional[_Union[SimilarityMode, str]] = ..., top_k: _Optional[int] = ..., truncate: _Optional[bool] = ..., dimensions: _Optional[int] = ...) -> None: ...

class ScoredDocument(_message.Message):
    __slots__ = ("index", "score")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    index: int
    score: float
    def __init__(self, index: _Optional[int] = ..., score: _Optional[float] = ...) -> None: ...

class SimilarityRow(_message.Message):
    __slots__ = ("scores", "ranked")
    SCORES_FIELD_NUMBER: _ClassVar[int]
    RANKED_FIELD_NUMBER: _ClassVar[int]
    scores: _containers.RepeatedScalarFieldContainer[float]
    ranked: _containers.RepeatedCompositeFieldContainer[ScoredDocument]
    def __init__(self, scores: _Optional[_Iterable[float]] = ..., ranked: _Optional[_Iterable[_Union[ScoredDocument, _Mapping]]] = ...) -> None: ...

class SimilarityResponse(_message.Message):
    __slots__ = ("rows", "mode", "model", "variant", "usage")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[SimilarityRow]
    mode: SimilarityMode
    model: str
    variant: str
    usage: Usage
    def __init__(self, rows: _Optional[_Iterable[_Union[SimilarityRow, _Mapping]]] = ..., mode: _Optional[_Union[SimilarityMode, str]] = ..., model: _Optional[str] = ..., variant: _Optional[str] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ...) -> None: ...

class VariantInfo(_message.Message):
    __slots__ = ("name", "backend", "device", "dtype", "dimensions", "is_default", "backend_reason", "min_cosine_to_fp32", "cpu_features")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    BACKEND_REASON_FIELD_NUMBER: _ClassVar[int]
    MIN_COSINE_TO_FP32_FIELD_NUMBER: _ClassVar[int]
    CPU_FEATURES_FIELD_NUMBER: _ClassVar[int]
    name: str
    backend: Backend
    device: Device
    dtype: str
    dimensions: int
    is_default: bool
    backend_reason: str
    min_cosine_to_fp32: float
    cpu_features: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., backend: _Optional[_Union[Backend, str]] = ..., device: _Optional[_Union[Device, str]] = ..., dtype: _Optional[str] = ..., dimensions: _Optional[int] = ..., is_default: _Optional[bool] = ..., backend_reason: _Optional[str] = ..., min_cosine_to_fp32: _Optional[float] = ..., cpu_features: _Optional[_Iterable[str]] = ...) -> None: ...

class Limits(_message.Message):
    __slots__ = ("max_inputs_per_request", "max_message_bytes", "max_input_tokens")
    MAX_INPUTS_PER_REQUEST_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    max_inputs_per_request: int
    max_message_bytes: int
    max_input_tokens: int
    def __init__(self, max_inputs_per_request: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., max_input_tokens: _Optional[int] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "source", "dimensions", "max_input_tokens", "prompts", "query_prompt_name", "document_prompt_name", "default_similarity", "variants", "limits", "is_default")
    class PromptsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PROMPTS_FIELD_NUMBER: _ClassVar[int]
    QUERY_PROMPT_NAME_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_PROMPT_NAME_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    name: str
    source: str
    dimensions: int
    max_input_tokens: int
    prompts: _containers.ScalarMap[str, str]
    query_prompt_name: str
    document_prompt_name: str
    default_similarity: SimilarityMode
    variants: _containers.RepeatedCompositeFieldContainer[VariantInfo]
    limits: Limits
    is_default: bool
    def __init__(self, name: _Optional[str] = ..., source: _Optional[str] = ..., dimensions: _Optional[int] = ..., max_input_tokens: _Optional[int] = ..., prompts: _Optional[_Mapping[str, str]] = ..., query_prompt_name: _Optional[str] = ..., document_prompt_name: _Optional[str] = ..., default_similarity: _Optional[_Union[SimilarityMode, str]] = ..., variants: _Optional[_Iterable[_Union[VariantInfo, _Mapping]]] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., is_default: _Optional[bool] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "default_model")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MODEL_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    default_model: str
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ..., default_model: _Optional[str] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class GetModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: ModelInfo
    def __init__(self, model: _Optional[_Union[ModelInfo, _Mapping]] = ...) -> None: ...

class CountTokensRequest(_message.Message):
    __slots__ = ("model", "inputs", "input_type", "prompt", "prompt_name")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    INPUT_TYPE_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    PROMPT_NAME_FIELD_NUMBER: _ClassVar[int]
    model: ModelSelector
    inputs: _containers.RepeatedScalarFieldContainer[str]
    input_type: InputType
    prompt: str
    prompt_name: str
    def __init__(self, model: _Optional[_Union[ModelSelector, _Mapping]] = ..., inputs: _Optional[_Iterable[str]] = ..., input_type: _Optional[_Union[InputType, str]] = ..., prompt: _Optional[str] = ..., prompt_name: _Optional[str] = ...) -> None: ...

class CountTokensResponse(_message.Message):
    __slots__ = ("token_counts", "max_input_tokens", "model")
    TOKEN_COUNTS_FIELD_NUMBER: _ClassVar[int]
    MAX_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    token_counts: _containers.RepeatedScalarFieldContainer[int]
    max_input_tokens: int
    model: str
    def __init__(self, token_counts: _Optional[_Iterable[int]] = ..., max_input_tokens: _Optional[int] = ..., model: _Optional[str] = ...) -> None: ...
