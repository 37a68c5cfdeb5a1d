"""Rerank functions of Milvus's hybrid search and of a search with a ranker, applied once, after the
per-sub-request merge across shards. Pure functions over plain data; no I/O.

Milvus computes rerank scores in float32 (``internal/util/function/rerank``); so does this module,
with numpy float32 scalars, so that ties (RRF produces many) and orders come out the same:

* **RRF**: ``score(id) = sum over sub-requests of 1 / (k + rank)``, rank counted from 1 in the
  sub-request's global result list; ``k`` in (0, 16384), default 60.
* **Weighted**: ``score(id) = sum of weight_i * norm_i(score_i)``; with ``norm_score`` the
  metric's normalisation (COSINE ``(1+s)/2``, IP ``0.5+atan(s)/pi``, BM25 ``2*atan(s)/pi``, L2 and
  the other distances ``1-2*atan(s)/pi``), without it the raw score, except that distances are
  turned into similarities the same way when the sub-requests mix both kinds. Results are sorted
  descending, except raw all-distance weighting, which is ascending.
* **Decay** (gauss, exp, linear over a numeric field): the sub-requests' best score (distances
  turned into similarities) times the decay of the field's distance from ``origin``.

Ties are broken by primary key (ascending); ``offset``/``limit`` apply after the rerank;
``round_decimal`` rounds half up like Milvus.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from shardproxy.errors import InvalidArgument, Unimplemented

F32 = np.float32
PI32 = F32(math.pi)
LARGER_BETTER = frozenset({"COSINE", "IP", "BM25"})


@dataclass(frozen=True)
class Ranker:
    kind: str  # "rrf" | "weighted" | "decay"
    k: float = 60.0
    weights: tuple[float, ...] = ()
    norm: bool = False
    input_field: str = ""
    function: str = ""
    origin: float = 0.0
    scale: float = 1.0
    offset: float = 0.0
    decay: float = 0.5
    params: dict[str, str] = field(default_factory=dict, compare=False)


# ---------------------------------------------------------------- parsing
def _loads(raw: str) -> object:
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return raw


def _num(params: Mapping[str, object], key: str, what: str) -> float:
    raw = params[key]
    try:
        return float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"Param {key}:{raw} is not a number") from exc


def _bool(raw: object, key: str) -> bool:
    if isinstance(raw, bool):
        return raw
    s = str(raw).strip().lower()
    if s in ("true", "1", "t"):
        return True
    if s in ("false", "0", "f", ""):
        return False
    raise InvalidArgument(f"{key} params must be true/false, but got {raw}")


def make_ranker(name: str, params: Mapping[str, object], input_fields: Sequence[str] = ()) -> Ranker:
    """A ranker from its name and parameters (already JSON-decoded where they were JSON)."""
    name = name.lower()
    lower = {str(k).lower(): v for k, v in params.items()}
    if name == "rrf":
        if input_fields:
            raise InvalidArgument(f"The rrf function does not support input parameters, but got {list(input_fields)}")
        k = _num(lower, "k", "rrf") if "k" in lower else 60.0
        if not 0 < k < 16384:
            raise InvalidArgument("The rank params k should be in range (0, 16384)")
        return Ranker("rrf", k=k)
    if name == "weighted":
        if input_fields:
            raise InvalidArgument(f"The weighted function does not support input parameters, but got {list(input_fields)}")
        raw = lower.get("weights")
        if isinstance(raw, str):
            raw = _loads(raw)
        if not isinstance(raw, list) or not raw:
            raise InvalidArgument("weights not found")
        try:
            weights = tuple(float(w) for w in raw)
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(f"Parse weights param failed, weight should be []float, but got: {raw}") from exc
        if any(w < 0 or w > 1 for w in weights):
            raise InvalidArgument("rank param weight should be in range [0, 1]")
        norm = _bool(lower.get("norm_score", False), "norm_score")
        return Ranker("weighted", weights=weights, norm=norm)
    if name == "decay":
        if len(input_fields) != 1:
            raise InvalidArgument(f"Decay function only supports single input, but gets {list(input_fields)} input")
        for req in ("origin", "scale"):
            if req not in lower:
                raise InvalidArgument(f"Decay function lost param: {req}")
        fn = str(lower.get("function", ""))
        if fn not in ("gauss", "exp", "linear"):
            raise InvalidArgument(f"Invalid decay function: {fn}, only support [gauss,linear,exp]")
        r = Ranker(
            "decay", input_field=input_fields[0], function=fn, origin=_num(lower, "origin", "decay"),
            scale=_num(lower, "scale", "decay"),
            offset=_num(lower, "offset", "decay") if "offset" in lower else 0.0,
            decay=_num(lower, "decay", "decay") if "decay" in lower else 0.5,
        )
        if r.scale <= 0:
            raise InvalidArgument(f"Decay function param: scale must > 0, but got {r.scale:f}")
        if r.offset < 0:
            raise InvalidArgument(f"Decay function param: offset must >= 0, but got {r.offset:f}")
        if not 0 < r.decay < 1:
            raise InvalidArgument(f"Decay function param: decay must 0 < decay < 1, but got {r.decay:f}")
        return r
    raise Unimplemented(f"rerank function {name!r} is not implemented by shardproxy (rrf, weighted and decay are)")


def ranker_from_rank_params(rank_params: Mapping[str, str]) -> Ranker:
    """HybridSearchRequest.rank_params as pymilvus's RRFRanker/WeightedRanker send them:
    ``strategy`` plus a JSON ``params`` object."""
    strategy = (rank_params.get("strategy") or "rrf").strip('"').lower()
    params = _loads(rank_params.get("params") or "{}")
    if not isinstance(params, dict):
        raise InvalidArgument(f"rank params must be a JSON object, got {rank_params.get('params')!r}")
    return make_ranker(strategy, params)


def ranker_from_function(fn: object) -> Ranker:
    """A ``schema_pb2.FunctionSchema`` of type Rerank (pymilvus ``Function(..., RERANK)``)."""
    params = {p.key: _loads(p.value) for p in fn.params}  # type: ignore[attr-defined]
    name = str(next((v for k, v in params.items() if k.lower() == "reranker"), ""))
    if not name:
        raise InvalidArgument("rerank function lacks the 'reranker' parameter")
    if list(fn.output_field_names):  # type: ignore[attr-defined]
        raise InvalidArgument("Rerank function should not have output field")
    return make_ranker(name, {k: v for k, v in params.items() if k.lower() != "reranker"},
                       list(fn.input_field_names))  # type: ignore[attr-defined]


# ---------------------------------------------------------------- scoring
def _norm_fn(norm: bool, metric: str, to_greater: bool):  # type: ignore[no-untyped-def]
    m = metric.upper()
    ident = lambda s: s  # noqa: E731
    dist_to_sim = lambda s: F32(1.0) - F32(2) * F32(math.atan(float(s))) / PI32  # noqa: E731
    if not norm:
        if not to_greater or m in LARGER_BETTER:
            return ident
        return dist_to_sim
    if m == "COSINE":
        return lambda s: (F32(1) + s) * F32(0.5)
    if m == "IP":
        return lambda s: F32(0.5) + F32(math.atan(float(s))) / PI32
    if m == "BM25":
        return lambda s: F32(2) * F32(math.atan(float(s))) / PI32
    return dist_to_sim


def _pk_key(pk: int | str) -> tuple[int, int | str]:
    return (0, pk) if isinstance(pk, int) else (1, pk)


def _decay_value(r: Ranker, x: float) -> float:
    adj = max(0.0, abs(x - r.origin) - r.offset)
    if r.function == "gauss":
        sigma_sq = r.scale ** 2 / math.log(r.decay)
        return math.exp(adj ** 2 / sigma_sq)
    if r.function == "exp":
        return math.exp(math.log(r.decay) / r.scale * adj)
    return max(r.decay, 1 - (1 - r.decay) / r.scale * adj)


def rerank(
    ranker: Ranker,
    lists: Sequence[Sequence[tuple[int | str, float]]],
    metrics: Sequence[str],
    offset: int,
    limit: int,
    round_decimal: int = -1,
    field_values: Mapping[int | str, float] | None = None,
) -> list[tuple[int | str, float]]:
    """One query's reranked page: ``lists[i]`` is sub-request i's global result list (best first,
    the metric's order), ``metrics[i]`` its metric; ``field_values`` the decay input per id."""
    scores: dict[int | str, np.float32] = {}
    descending = True
    if ranker.kind == "rrf":
        k = F32(ranker.k)
        for hits in lists:
            for idx, (pk, _) in enumerate(hits):
                add = F32(1) / (k + F32(idx + 1))
                scores[pk] = scores[pk] + add if pk in scores else add
    elif ranker.kind == "weighted":
        if len(lists) != len(ranker.weights):
            raise InvalidArgument(
                f"the length of weights param mismatch with ann search requests: invalid parameter"
                f"[expected={len(lists)}][actual={len(ranker.weights)}]"
            )
        larger = sum(1 for m in metrics if m.upper() in LARGER_BETTER)
        mixed = 0 < larger < len(metrics)
        descending = ranker.norm or mixed or larger == len(metrics)
        for i, hits in enumerate(lists):
            fn = _norm_fn(ranker.norm, metrics[i], mixed)
            w = F32(ranker.weights[i])
            for pk, s in hits:
                add = w * fn(F32(s))
                scores[pk] = scores[pk] + add if pk in scores else add
    elif ranker.kind == "decay":
        if field_values is None:
            raise InvalidArgument(f"decay rerank needs the values of {ranker.input_field!r}")
        best: dict[int | str, np.float32] = {}
        for i, hits in enumerate(lists):
            conv = _norm_fn(False, metrics[i], True)
            for pk, s in hits:
                v = conv(F32(s))
                best[pk] = max(best[pk], v) if pk in best else v
        for pk, src in best.items():
            scores[pk] = F32(_decay_value(ranker, float(field_values[pk]))) * src
    else:  # pragma: no cover - make_ranker only builds the three kinds
        raise Unimplemented(f"rerank {ranker.kind}")
    sign = -1.0 if descending else 1.0
    ordered = sorted(scores.items(), key=lambda kv: (sign * float(kv[1]), _pk_key(kv[0])))
    page = ordered[offset: offset + limit]
    out = []
    for pk, s in page:
        val = float(s)
        if round_decimal != -1:
            mult = 10.0 ** round_decimal
            val = float(F32(math.floor(val * mult + 0.5) / mult))
        out.append((pk, val))
    return out
