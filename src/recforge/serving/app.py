"""The recommendation service: a FastAPI app over a model registry, a feature store, an event
log and an A/B assigner (`create_app`).

A ``POST /recommend`` runs the request path, each stage timed into
``recforge_stage_latency_seconds``:

1. **features**: the user's online features from the store in one round trip (their last
   items; an anonymous request's ``history`` stands in for them);
2. **retrieve**: the A/B arm picks the model version; its ANN index (or the model's own
   scores) gives ``[serve] candidates`` items, the user's training items, fresh items and the
   excluded items left out (a two-tower or sequential model reads the fresh history, so an
   event changes the next answer without a refit);
3. **rank**: the configured ranker re-scores the candidates (skipped without one);
4. **rerank**: MMR or DPP (`recforge.rerank`) re-orders the top ``[rerank] depth`` on the
   items' genres or the model's item vectors;
5. **filter**: the request's and the configuration's excluded ids and genres, and the seen
   items, are dropped and the list cut to ``k``.

The answer names the items (external ids, scores, titles, genres), the model version and the
arm; the exposure is logged for each experiment the user is in, and the list feeds the
quality gauges. ``POST /events`` appends to the event log and applies to the feature store
(idempotent by ``event_id``). Routes, auth and metrics: see the OpenAPI schema at
``/openapi.json``, `recforge.serving.auth` and `recforge.serving.metrics`.
"""

from __future__ import annotations

import contextlib
import gc
import os
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from recforge.abtest.exposure import Exposure, ExposureLog
from recforge.errors import InputError, UnknownNameError
from recforge.rerank.dpp import DPPReranker
from recforge.rerank.mmr import MMRReranker
from recforge.serving.auth import TokenAuth
from recforge.serving.config import ServeConfig, load_config
from recforge.serving.events import EventLog, parse_events
from recforge.serving.metrics import Metrics
from recforge.serving.quality import QualityWindow
from recforge.serving.registry import ModelRegistry, ServedModel, served_model_loader
from recforge.serving.store import genres_of, ingest, open_store, replay

WEB_DIR = Path(__file__).with_name("web")
DEFAULT_ARM = "default"
#: environment variables through which ``recforge serve`` hands its options to the workers
MODEL_ENV, CONFIG_ENV = "RECFORGE_SERVE_MODEL", "RECFORGE_SERVE_CONFIG"
Id = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$",
                          description="an external id (the dataset's)")]


# ---------------------------------------------------------------------- request/response models
class Filters(BaseModel):
    """Business rules for one request, applied after re-ranking."""

    model_config = ConfigDict(extra="forbid")
    exclude: list[Id] = Field(default=[], max_length=10_000,
                              description="item ids never to return")
    exclude_genres: list[Annotated[str, Field(max_length=100)]] = Field(
        default=[], max_length=100, description="drop items with any of these genres")
    genres: list[Annotated[str, Field(max_length=100)]] = Field(
        default=[], max_length=100, description="keep only items with one of these genres")


class RecommendRequest(BaseModel):
    """A known user (``user_id``), or an anonymous one described by ``history``."""

    model_config = ConfigDict(extra="forbid")
    user_id: Id | None = Field(default=None, description="the user's external id")
    history: list[Id] = Field(default=[], max_length=1000,
                              description="item ids the user liked, oldest first (added "
                                          "to the user's fresh history from the store)")
    k: int = Field(default=10, ge=1, le=1000, description="how many items to return")
    context: dict[str, str | int | float | bool] = Field(
        default={}, max_length=50, description="request context (time, device, ...), "
                                               "given to the ranking model")
    filters: Filters = Field(default_factory=Filters, description="business rules")


class ItemOut(BaseModel):
    """One recommended item."""

    id: str = Field(description="the item's external id")
    score: float = Field(description="the last stage's score (higher is better)")
    title: str | None = Field(description="the item's title, when the catalogue has one")
    genres: list[str] = Field(description="the item's genres, when known")


class RecommendResponse(BaseModel):
    """The answer to ``POST /recommend``."""

    items: list[ItemOut]
    model_version: str = Field(description="the model version that answered")
    arm: str = Field(description="the user's A/B arm ('default' outside every experiment)")
    source: str = Field(description="how the candidates were found: index, index+fresh, "
                                    "encoder, model or popularity")
    request_id: str


class SimilarResponse(BaseModel):
    """The answer to ``GET /similar/{item}``."""

    items: list[ItemOut]
    model_version: str


class EventIn(BaseModel):
    """One user action; only the ids and ``event`` are required."""

    model_config = ConfigDict(extra="forbid")
    event_id: Id = Field(description="unique id: a repeated event is ignored")
    user_id: Id
    item_id: Id
    event: Annotated[str, Field(min_length=1, max_length=256, pattern=r"^\S+$",
                                description="the action, e.g. click, rating, watch")]
    value: float = Field(default=1.0, allow_inf_nan=False)
    timestamp: float | None = Field(default=None, ge=0, allow_inf_nan=False,
                                    description="seconds since the epoch; default: now")


class EventsResponse(BaseModel):
    """The answer to ``POST /events``."""

    accepted: int = Field(description="events new to the log")
    duplicates: int = Field(description="events whose event_id was already logged")


class VersionOut(BaseModel):
    name: str
    active: bool
    loaded: bool


class ModelsResponse(BaseModel):
    """The registry: its versions, the active one, the earlier ones and the A/B routes."""

    active: str
    versions: list[VersionOut]
    history: list[str]
    routes: dict[str, dict[str, str]]


class StatusResponse(BaseModel):
    """A status and its details."""

    status: str
    detail: dict[str, Any] = {}


class FieldError(BaseModel):
    """One invalid field of a request: its dotted path and the problem."""

    field: str
    message: str


class ErrorDetail(BaseModel):
    message: str = Field(description="one line naming the problem")
    errors: list[FieldError] = Field(default=[], description="each invalid field (422)")


class ErrorResponse(BaseModel):
    """The body of every error answer (400, 401, 404, 422)."""

    status: str
    detail: ErrorDetail


class UserOut(BaseModel):
    id: str
    recent_items: list[str]


class CatalogueItem(BaseModel):
    id: str
    title: str | None
    genres: list[str]


# ---------------------------------------------------------------------- the service
class Service:
    """Everything one worker holds: registry, store, logs, assigner, auth, metrics and the
    quality windows; built from a `ServeConfig` (and the item side information of ``data``,
    else of the configured dataset)."""

    def __init__(self, config: ServeConfig, data: Any = None):
        self.config = config
        serve = config.serve
        config.state_dir.mkdir(parents=True, exist_ok=True)
        if data is None and serve["dataset"]:
            data = _load_dataset(serve["dataset"])
        loader = served_model_loader(data=data, index_kind=serve["index"],
                                     index_settings=serve["index_settings"],
                                     ranker=serve["ranker"])
        self.registry = ModelRegistry(config.model_dir, loader,
                                      pointer=config.state_dir / "ACTIVE")
        for versions in config.routes.values():
            for version in versions.values():
                self.registry.get(version)
        self.auth = TokenAuth.from_settings(config.auth["token_file"])
        self.assigner = config.assigner()
        genres = None if data is None else genres_of(data)
        self.store = open_store(config.store_url, item_genres=genres)
        self.events = EventLog(config.state_path("event_log"))
        replay(self.events, self.store)  # catch up after a crash between log and store
        self.exposures = ExposureLog(config.state_path("exposure_log")) \
            if config.routes or self.assigner.experiments else None
        self.metrics = Metrics()
        self._windows: dict[str, QualityWindow] = {}
        self._publish_models()

    def close(self) -> None:
        self.store.close()
        self.events.close()
        if self.exposures is not None:
            self.exposures.close()

    def _publish_models(self) -> None:
        self.metrics.set_model(DEFAULT_ARM, self.registry.active.name)
        for experiment, versions in self.config.routes.items():
            for arm, version in versions.items():
                self.metrics.set_model(f"{experiment}:{arm}", version)

    # ------------------------------------------------------------------ routing
    def route(self, user_id: str | None) -> tuple[ServedModel, str, dict[str, str]]:
        """The version serving ``user_id``, its arm and all the user's experiment arms."""
        self.registry.refresh()
        active = self.registry.active
        if user_id is None or not self.assigner.experiments:
            return active, DEFAULT_ARM, {}
        arms = self.assigner.assign(user_id)
        for experiment, versions in self.config.routes.items():
            arm = arms.get(experiment)
            if arm is not None:
                version = versions.get(arm)
                return (self.registry.get(version) if version else active), arm, arms
        return active, DEFAULT_ARM, arms

    def window(self, served: ServedModel) -> QualityWindow:
        """The quality window of one version (created on its first list)."""
        window = self._windows.get(served.name)
        if window is None:
            features = served.info.genres if served.info.genres is not None \
                else served.model.item_vectors()
            window = QualityWindow(self.config.serve["quality_window"], served.n_items,
                                   served.popularity, features, served.info.years)
            self._windows[served.name] = window
        return window

    # ------------------------------------------------------------------ the request path
    def recommend(self, request: RecommendRequest) -> RecommendResponse:
        """The request path of the module docstring."""
        if request.k > self.config.serve["max_k"]:
            raise InputError(f"k: at most {self.config.serve['max_k']} (the service's max_k), "
                             f"got {request.k}")
        served, arm, arms = self.route(request.user_id)
        timer = _StageTimer(self.metrics)
        with timer("features"):
            fresh_ids = list(request.history)
            if request.user_id is not None:
                start = time.perf_counter()
                features = self.store.user(request.user_id)
                self.metrics.store_latency.labels(op="user").observe(
                    time.perf_counter() - start)
                fresh_ids = [*features.recent_items, *fresh_ids]
            user = served.user_index(request.user_id)
            fresh = served.item_indices(fresh_ids)
            fresh = fresh[fresh >= 0]
        with timer("retrieve"):
            excluded = self._excluded(served, request, user, fresh)
            n = max(self.config.serve["candidates"], request.k)
            items, scores, source = served.retrieve(user, fresh, n, excluded)
        with timer("rank"):
            items, scores = served.rank(user, fresh, items, scores, request.context)
        with timer("rerank"):
            items, scores = self._rerank(served, items, scores)
        with timer("filter"):
            items, scores = self._filter(served, request, items, scores, excluded)
        answer = self._items(served, items, scores)
        request_id = uuid.uuid4().hex
        self._observe(served, items, request, arms, answer, request_id)
        return RecommendResponse(items=answer, model_version=served.name, arm=arm,
                                 source=source, request_id=request_id)

    def _excluded(self, served: ServedModel, request: RecommendRequest, user: int,
                  fresh: np.ndarray) -> np.ndarray:
        filters = self.config.filters
        parts = [served.item_indices([*filters["exclude_items"], *request.filters.exclude])]
        if filters["exclude_seen"]:
            parts += [served.training_items(user), fresh]
        out = np.unique(np.concatenate(parts).astype(np.int64))
        return out[out >= 0]

    def _rerank(self, served: ServedModel, items: np.ndarray,
                scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        settings = self.config.rerank
        depth = min(settings["depth"], len(items))
        if settings["method"] == "none" or depth < 2:
            return items, scores
        features = served.info.genres if settings["similarity"] == "genres" \
            else served.model.item_vectors()
        if features is None:
            return items, scores
        if settings["method"] == "mmr":
            reranker: Any = MMRReranker(lambda_=settings["lambda_"], candidates=depth,
                                        similarity=features)
        else:
            reranker = DPPReranker(theta=settings["theta"], candidates=depth,
                                   similarity=features)
        head = reranker.greedy(items[None, :depth], scores[None, :depth].astype(np.float64),
                               features, depth)[0]
        head = head[head >= 0]
        position = {int(item): i for i, item in enumerate(items[:depth])}
        order = np.array([position[int(item)] for item in head], dtype=np.int64)
        rest = np.setdiff1d(np.arange(depth), order, assume_unique=True)
        order = np.concatenate([order, rest, np.arange(depth, len(items))])
        # the greedy order is the answer: scores become negated final ranks, as the pipeline
        return items[order], -np.arange(1, len(order) + 1, dtype=np.float32)

    def _filter(self, served: ServedModel, request: RecommendRequest, items: np.ndarray,
                scores: np.ndarray, excluded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keep = ~np.isin(items, excluded)
        drop = [*self.config.filters["exclude_genres"], *request.filters.exclude_genres]
        only = request.filters.genres
        if (drop or only) and served.info.genres is None:
            raise InputError("filters: genre filters need item genres ([serve] dataset)")
        if drop or only:
            labels = served.info.genre_labels
            unknown = sorted((set(drop) | set(only)) - set(labels))
            if unknown:
                raise InputError(f"filters: unknown genre {unknown[0]!r}; known: "
                                 f"{', '.join(labels)}")
            genres = served.info.genres[items]
            if drop:
                columns = [labels.index(g) for g in drop]
                keep &= np.asarray(genres[:, columns].sum(axis=1)).ravel() == 0
            if only:
                columns = [labels.index(g) for g in only]
                keep &= np.asarray(genres[:, columns].sum(axis=1)).ravel() > 0
        items, scores = items[keep], scores[keep]
        return items[:request.k], scores[:request.k]

    def _items(self, served: ServedModel, items: np.ndarray,
               scores: np.ndarray) -> list[ItemOut]:
        titles = served.retriever.titles
        return [ItemOut(id=str(served.item_ids[i]), score=float(s),
                        title=None if titles is None else titles[i],
                        genres=served.info.genre_names(int(i)))
                for i, s in zip(items.tolist(), scores.tolist())]

    def _observe(self, served: ServedModel, items: np.ndarray, request: RecommendRequest,
                 arms: dict[str, str], answer: list[ItemOut], request_id: str) -> None:
        now = time.time()
        window = self.window(served)
        window.add(items, now)
        self.metrics.set_quality(window.figures())
        if self.exposures is not None and arms and request.user_id is not None:
            ids = tuple(item.id for item in answer)
            self.exposures.log([Exposure(request.user_id, experiment, arm, now, request_id,
                                         ids) for experiment, arm in arms.items()])

    # ------------------------------------------------------------------ other routes
    def similar(self, item: str, k: int) -> SimilarResponse:
        self.registry.refresh()
        served = self.registry.active
        if k > self.config.serve["max_k"]:
            raise InputError(f"k: at most {self.config.serve['max_k']}, got {k}")
        index = served.item_indices([item])[0]
        if index < 0:
            raise UnknownNameError(f"unknown item id {item!r}")
        answer = served.retriever.similar(served.item_ids[index].item(), k=k)
        return SimilarResponse(items=self._items(served, answer.items, answer.scores),
                               model_version=served.name)

    def ingest(self, payload: list[dict[str, Any]]) -> EventsResponse:
        events = parse_events(payload)
        start = time.perf_counter()
        accepted = ingest(events, self.store, self.events)
        self.metrics.store_latency.labels(op="apply").observe(time.perf_counter() - start)
        stamps = [e.timestamp for e in events if e.timestamp is not None]
        if stamps:
            self.metrics.event_lag.set(max(0.0, time.time() - max(stamps)))
        return EventsResponse(accepted=accepted, duplicates=len(events) - accepted)

    def models(self) -> ModelsResponse:
        active = self.registry.active.name
        loaded = set(self.registry.loaded())
        return ModelsResponse(
            active=active, history=self.registry.history(), routes=self.config.routes,
            versions=[VersionOut(name=v, active=v == active, loaded=v in loaded)
                      for v in self.registry.versions()])

    def ready(self) -> tuple[bool, dict[str, Any]]:
        detail: dict[str, Any] = {"model_version": self.registry.active.name}
        try:
            start = time.perf_counter()
            self.store.user("__recforge_ready__")
            detail["store_seconds"] = round(time.perf_counter() - start, 6)
        except Exception as exc:  # noqa: BLE001 - any failure of the store's backend: not ready
            detail["store"] = f"{type(exc).__name__}: {exc}"
            return False, detail
        return True, detail


class _StageTimer:
    """``with timer("retrieve"): ...`` observes the block's seconds as that stage."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def __call__(self, stage: str) -> Any:
        @contextlib.contextmanager
        def timed() -> Any:
            start = time.perf_counter()
            yield
            self.metrics.stage.labels(stage=stage).observe(time.perf_counter() - start)

        return timed()


def _load_dataset(name: str) -> Any:
    from recforge.data.loading import load_dataset

    return load_dataset(name)


# ---------------------------------------------------------------------- the app
def create_app(config: ServeConfig, data: Any = None) -> FastAPI:
    """The FastAPI app serving ``config`` (module docstring); ``data`` (an `Interactions`
    with item features) gives the items' genres and years instead of ``[serve] dataset``."""
    service = Service(config, data)
    app = FastAPI(title="recforge", version=_version(),
                  description="Recommendations, similar items, events and model versions.",
                  responses={422: {"description": "invalid request: the fields named",
                                   "model": ErrorResponse}})
    app.state.service = service

    def protected(request: Request) -> None:
        if not service.auth.check(request.headers.get("authorization")):
            raise HTTPException(401, "missing or wrong bearer token",
                                headers={"WWW-Authenticate": "Bearer"})

    def readable(request: Request) -> None:
        if config.auth["protect_reads"]:
            protected(request)

    _install_handlers(app, service)
    read = [Depends(readable)]
    write = [Depends(protected)]
    unauthorized = {401: {"description": "missing or wrong bearer token",
                          "model": ErrorResponse}}
    invalid = {400: {"description": "a value outside what the service accepts",
                     "model": ErrorResponse},
               404: {"description": "unknown id", "model": ErrorResponse}}

    @app.post("/recommend", response_model=RecommendResponse, dependencies=read,
              responses={**unauthorized, **invalid})
    async def recommend(body: RecommendRequest) -> Response:
        """Top-k items for a user (fresh history from the feature store) or a history."""
        return _json(service.recommend(body))

    @app.get("/similar/{item}", response_model=SimilarResponse, dependencies=read,
             responses={**unauthorized, **invalid})
    async def similar(item: Annotated[str, PathParam(min_length=1, max_length=256)],
                      k: Annotated[int, Query(ge=1, le=1000)] = 10) -> SimilarResponse:
        """The items most similar to ``item`` (cosine of the model's item vectors)."""
        return service.similar(item, k)

    @app.post("/events", response_model=EventsResponse, dependencies=write,
              responses={**unauthorized, 400: invalid[400]})
    async def events(body: EventIn | list[EventIn]) -> EventsResponse:
        """Record events (one or a list): appended to the event log and applied to the
        feature store; a repeated ``event_id`` is ignored."""
        items = body if isinstance(body, list) else [body]
        payload = [item.model_dump(exclude_none=True) for item in items]
        return service.ingest(payload)

    @app.get("/health", response_model=StatusResponse)
    async def health() -> StatusResponse:
        """Liveness: the process answers."""
        return StatusResponse(status="ok")

    @app.get("/ready", response_model=StatusResponse,
             responses={503: {"description": "not ready", "model": StatusResponse}})
    async def ready() -> Any:
        """Readiness: a model version is loaded and the feature store answers."""
        ok, detail = service.ready()
        body = StatusResponse(status="ready" if ok else "unavailable", detail=detail)
        return body if ok else JSONResponse(body.model_dump(), status_code=503)

    @app.get("/metrics", dependencies=read, response_class=Response,
             responses={200: {"content": {"text/plain": {}}}, **unauthorized})
    async def metrics() -> Response:
        """Prometheus metrics (text exposition format)."""
        body, content_type = service.metrics.exposition()
        return Response(body, media_type=content_type)

    @app.get("/models", response_model=ModelsResponse, dependencies=read,
             responses=unauthorized)
    async def models() -> ModelsResponse:
        """The registry's versions, the active one and the A/B routes."""
        return service.models()

    @app.post("/models/{name}/activate", response_model=ModelsResponse, dependencies=write,
              responses={**unauthorized, **invalid})
    def activate(name: Annotated[str, PathParam(min_length=1, max_length=128)]
                 ) -> ModelsResponse:
        """Load version ``name`` and swap it in (requests in flight finish on the old one)."""
        service.registry.activate(name)
        service.metrics.set_model(DEFAULT_ARM, name)
        return service.models()

    @app.post("/models/rollback", response_model=ModelsResponse, dependencies=write,
              responses={**unauthorized, **invalid})
    def rollback() -> ModelsResponse:
        """Re-activate the version active before the current one."""
        served = service.registry.rollback()
        service.metrics.set_model(DEFAULT_ARM, served.name)
        return service.models()

    @app.get("/users", response_model=list[UserOut], dependencies=read,
             responses=unauthorized)
    async def users(limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[UserOut]:
        """Known user ids (the first ``limit``) with their fresh items, for the web page."""
        served = service.registry.active
        ids = [] if served.retriever.user_map is None else \
            [str(u) for u in served.retriever.user_map.ids[:limit]]
        return [UserOut(id=u, recent_items=list(f.recent_items))
                for u, f in zip(ids, service.store.users(ids))]

    @app.get("/items", response_model=list[CatalogueItem], dependencies=read,
             responses=unauthorized)
    async def items(q: Annotated[str, Query(max_length=200)] = "",
                    limit: Annotated[int, Query(ge=1, le=100)] = 20) -> list[CatalogueItem]:
        """Catalogue items whose title contains ``q`` (case-insensitive)."""
        served = service.registry.active
        titles = served.retriever.titles or []
        needle = q.casefold()
        found = [i for i, t in enumerate(titles) if t and needle in t.casefold()][:limit]
        return [CatalogueItem(id=str(served.item_ids[i]), title=titles[i],
                              genres=served.info.genre_names(i)) for i in found]

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html")

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    return app


def _install_handlers(app: FastAPI, service: Service) -> None:
    """422 naming the field for bad bodies, 400/404 for values the service refuses, and the
    request counter and latency histogram around every route."""

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _field_errors(exc.errors())
        fields = [".".join(str(p) for p in e.get("loc", ()) if not _is_tag(p)) or "body"
                  for e in errors]
        detail = [{"field": f, "message": e.get("msg", "")} for f, e in zip(fields, errors)]
        message = "; ".join(f"{d['field']}: {d['message']}" for d in detail[:5])
        return JSONResponse({"status": "invalid", "detail": {"message": message,
                                                             "errors": detail}},
                            status_code=422)

    @app.exception_handler(UnknownNameError)
    async def unknown(request: Request, exc: UnknownNameError) -> JSONResponse:
        return JSONResponse({"status": "not found", "detail": {"message": str(exc)}},
                            status_code=404)

    @app.exception_handler(InputError)
    async def refused(request: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"status": "invalid", "detail": {"message": str(exc)}},
                            status_code=400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"status": "error", "detail": {"message": str(exc.detail)}},
                            status_code=exc.status_code, headers=exc.headers)

    app.add_middleware(_CountRequests, metrics=service.metrics)


class _CountRequests:
    """ASGI middleware: ``recforge_requests_total`` and ``recforge_request_latency_seconds``
    for every HTTP request, labelled by route template (``unmatched`` for none) and status
    (500 when the app fails before answering)."""

    def __init__(self, app: Any, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def sending(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            name = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(route=name, status=str(status)).inc()
            self.metrics.latency.labels(route=name).observe(time.perf_counter() - start)


def _json(model: BaseModel) -> Response:
    """``model`` as a JSON response, serialised once by pydantic (the route's
    ``response_model`` documents it; FastAPI's re-validation of a model the service built
    itself is skipped on the hot path)."""
    return Response(model.model_dump_json(), media_type="application/json")


def _is_tag(part: Any) -> bool:
    """Whether a part of an error's location is not a field: the body itself, or the branch
    of a union (``EventIn``, ``list[EventIn]``)."""
    return part == "body" or (isinstance(part, str) and (part[:1].isupper() or "[" in part))


def _field_errors(errors: Any) -> list[dict[str, Any]]:
    """The errors worth reporting: for a body matching no branch of a union, the errors
    inside the branch of the body's own shape (an object's fields), not "not a list"."""
    shaped = [e for e in errors if e.get("type") not in ("list_type", "model_type",
                                                         "model_attributes_type")]
    return shaped or list(errors)


def _version() -> str:
    from recforge import __version__

    return __version__


def app_from_env() -> FastAPI:
    """The app of ``recforge serve``'s workers: the model folder and config file from
    ``RECFORGE_SERVE_MODEL`` and ``RECFORGE_SERVE_CONFIG`` (uvicorn's factory)."""
    app = create_app(load_config(os.environ[MODEL_ENV], os.environ.get(CONFIG_ENV) or None))
    # the models, indexes and libraries loaded so far live as long as the worker: moved out
    # of the collector's reach, a full collection no longer walks them (pauses of 100 ms
    # and more in the latency tail otherwise)
    gc.collect()
    gc.freeze()
    return app
