"""Loopback gRPC servers that speak Google Cloud APIs with the client libraries' own messages.

A `LoopbackServer` listens on 127.0.0.1 (plain gRPC) and routes each full method name
("/google.cloud.secretmanager.v1.SecretManagerService/AccessSecretVersion") to a Python handler;
requests are decoded and responses encoded by the proto-plus classes of the real client library,
so the bytes on the wire are what Google's servers exchange. Each fake records the requests it got.

Identity: a server may be given the `caller` whose requests it receives (one server, hence one
port, per caller: the production-parity run gives each function its own endpoint). A fake with an
`authorize(caller, permission, resource)` callback answers PERMISSION_DENIED, with the message
Google's services give, whenever it returns False: IAM is checked before the resource is looked
up, so a denied caller cannot tell a missing secret from a forbidden one.
`FirestoreGate` does the same in front of the Firestore emulator, which has no IAM of its own.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any, ClassVar

import google_crc32c
import grpc
from google.cloud import aiplatform_v1, secretmanager_v1

Handler = Callable[[Any, grpc.ServicerContext], Any]
#: (caller, permission, resource) -> whether IAM allows it; caller None is an unknown identity.
Authorize = Callable[[str | None, str, str], bool]


@dataclass(frozen=True)
class Denial:
    """One request refused with PERMISSION_DENIED."""

    caller: str | None
    permission: str
    resource: str


class LoopbackServer(grpc.GenericRpcHandler):  # type: ignore[misc]
    """A plain-gRPC server on 127.0.0.1 with handlers registered per method; `caller` is the
    identity every request it receives is made with (None: not known)."""

    def __init__(self, caller: str | None = None) -> None:
        self.caller = caller
        self._methods: dict[str, grpc.RpcMethodHandler] = {}
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        self._server.add_generic_rpc_handlers((self,))
        port = self._server.add_insecure_port("127.0.0.1:0")
        self.endpoint = f"127.0.0.1:{port}"

    def unary(self, method: str, request_type: Any, response_type: Any, handler: Handler) -> None:
        """Serve `method` ("/package.Service/Method") with `handler(request, context)`."""
        self._methods[method] = grpc.unary_unary_rpc_method_handler(
            handler,
            request_deserializer=request_type.deserialize,
            response_serializer=response_type.serialize,
        )

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        return self._methods.get(handler_call_details.method)

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop(grace=None)


@dataclass
class FakeSecretManager:
    """SecretManagerService.AccessSecretVersion over a dict of secret versions.

    `versions[(project, secret)]` lists payloads, version 1 first. `denied` names secrets whose
    access is PERMISSION_DENIED; `authorize` decides per caller (secretmanager.versions.access on
    the version's name); `unavailable` counts calls still to fail with UNAVAILABLE; `corrupt`
    names secrets whose CRC32C is wrong.
    """

    versions: dict[tuple[str, str], list[bytes]] = field(default_factory=dict)
    denied: set[str] = field(default_factory=set)
    corrupt: set[str] = field(default_factory=set)
    unavailable: int = 0
    authorize: Authorize | None = None
    requests: list[secretmanager_v1.AccessSecretVersionRequest] = field(default_factory=list)
    denials: list[Denial] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add_version(self, project: str, secret: str, data: bytes) -> int:
        with self._lock:
            self.versions.setdefault((project, secret), []).append(data)
            return len(self.versions[(project, secret)])

    def register(self, server: LoopbackServer) -> None:
        caller = server.caller
        server.unary(
            "/google.cloud.secretmanager.v1.SecretManagerService/AccessSecretVersion",
            secretmanager_v1.AccessSecretVersionRequest,
            secretmanager_v1.AccessSecretVersionResponse,
            lambda request, context: self.access_secret_version(request, context, caller),
        )

    def access_secret_version(
        self,
        request: secretmanager_v1.AccessSecretVersionRequest,
        context: grpc.ServicerContext,
        caller: str | None = None,
    ) -> secretmanager_v1.AccessSecretVersionResponse:
        with self._lock:
            self.requests.append(request)
            if self.unavailable > 0:
                self.unavailable -= 1
                context.abort(grpc.StatusCode.UNAVAILABLE, "The service is currently unavailable.")
        parts = request.name.split("/")
        if len(parts) != 6 or parts[0] != "projects" or parts[2] != "secrets":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad name {request.name}")
        project, secret, version = parts[1], parts[3], parts[5]
        permission = "secretmanager.versions.access"
        if self.authorize is not None and not self.authorize(caller, permission, request.name):
            with self._lock:
                self.denials.append(Denial(caller, permission, request.name))
            context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"Permission '{permission}' denied for resource '{request.name}' "
                "(or it may not exist).",
            )
        if secret in self.denied:
            context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"Permission 'secretmanager.versions.access' denied for resource '{request.name}'",
            )
        with self._lock:
            payloads = list(self.versions.get((project, secret), []))
        number = len(payloads) if version == "latest" else int(version)
        if not payloads or not 1 <= number <= len(payloads):
            context.abort(grpc.StatusCode.NOT_FOUND, f"Secret [{request.name}] not found.")
        data = payloads[number - 1]
        crc = google_crc32c.value(data) + (1 if secret in self.corrupt else 0)
        return secretmanager_v1.AccessSecretVersionResponse(
            name=f"projects/{project}/secrets/{secret}/versions/{number}",
            payload=secretmanager_v1.SecretPayload(data=data, data_crc32c=crc),
        )


@dataclass
class FakeVertex:
    """IndexService.UpsertDatapoints/RemoveDatapoints and MatchService.FindNeighbors.

    Holds the upserted datapoints and answers FindNeighbors by exact dot product, applying the
    query's restricts with `match` (the caller passes the semantics under test). Every request is
    recorded for field-by-field checks. `authorize`, when set, is asked for the permission each
    method needs on the resource it names (roles/aiplatform.user holds all four).
    """

    datapoints: dict[str, aiplatform_v1.IndexDatapoint] = field(default_factory=dict)
    upserts: list[aiplatform_v1.UpsertDatapointsRequest] = field(default_factory=list)
    removes: list[aiplatform_v1.RemoveDatapointsRequest] = field(default_factory=list)
    finds: list[aiplatform_v1.FindNeighborsRequest] = field(default_factory=list)
    predicts: list[aiplatform_v1.PredictRequest] = field(default_factory=list)
    fail_next: grpc.StatusCode | None = None
    neighbors: (
        Callable[
            [aiplatform_v1.FindNeighborsRequest.Query, dict[str, aiplatform_v1.IndexDatapoint]],
            list[tuple[str, float]],
        ]
        | None
    ) = None
    embed: Callable[[str], list[float]] | None = None
    authorize: Authorize | None = None
    denials: list[Denial] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # Method -> (request type, response type, handler name, permission, field naming the resource).
    _METHODS: ClassVar[dict[str, tuple[Any, Any, str, str, str]]] = {
        "/google.cloud.aiplatform.v1.IndexService/UpsertDatapoints": (
            aiplatform_v1.UpsertDatapointsRequest,
            aiplatform_v1.UpsertDatapointsResponse,
            "upsert_datapoints",
            "aiplatform.indexes.update",
            "index",
        ),
        "/google.cloud.aiplatform.v1.IndexService/RemoveDatapoints": (
            aiplatform_v1.RemoveDatapointsRequest,
            aiplatform_v1.RemoveDatapointsResponse,
            "remove_datapoints",
            "aiplatform.indexes.update",
            "index",
        ),
        "/google.cloud.aiplatform.v1.MatchService/FindNeighbors": (
            aiplatform_v1.FindNeighborsRequest,
            aiplatform_v1.FindNeighborsResponse,
            "find_neighbors",
            "aiplatform.indexEndpoints.queryVectors",
            "index_endpoint",
        ),
        "/google.cloud.aiplatform.v1.PredictionService/Predict": (
            aiplatform_v1.PredictRequest,
            aiplatform_v1.PredictResponse,
            "predict",
            "aiplatform.endpoints.predict",
            "endpoint",
        ),
    }

    def register(self, server: LoopbackServer) -> None:
        for method, (
            request_type,
            response_type,
            name,
            permission,
            field_name,
        ) in self._METHODS.items():
            server.unary(
                method,
                request_type,
                response_type,
                self._checked(getattr(self, name), permission, field_name, server.caller),
            )

    def _checked(
        self, handler: Handler, permission: str, field_name: str, caller: str | None
    ) -> Handler:
        def checked(request: Any, context: grpc.ServicerContext) -> Any:
            resource = str(getattr(request, field_name))
            if self.authorize is not None and not self.authorize(caller, permission, resource):
                with self._lock:
                    self.denials.append(Denial(caller, permission, resource))
                context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"Permission '{permission}' denied on resource "
                    f"'//aiplatform.googleapis.com/{resource}' (or it may not exist).",
                )
            return handler(request, context)

        return checked

    def _maybe_fail(self, context: grpc.ServicerContext) -> None:
        with self._lock:
            code, self.fail_next = self.fail_next, None
        if code is not None:
            context.abort(code, f"injected {code.name}")

    def upsert_datapoints(
        self, request: aiplatform_v1.UpsertDatapointsRequest, context: grpc.ServicerContext
    ) -> aiplatform_v1.UpsertDatapointsResponse:
        with self._lock:
            self.upserts.append(request)
        self._maybe_fail(context)
        with self._lock:
            for point in request.datapoints:
                self.datapoints[point.datapoint_id] = point
        return aiplatform_v1.UpsertDatapointsResponse()

    def remove_datapoints(
        self, request: aiplatform_v1.RemoveDatapointsRequest, context: grpc.ServicerContext
    ) -> aiplatform_v1.RemoveDatapointsResponse:
        with self._lock:
            self.removes.append(request)
        self._maybe_fail(context)
        with self._lock:
            for datapoint_id in request.datapoint_ids:
                self.datapoints.pop(datapoint_id, None)
        return aiplatform_v1.RemoveDatapointsResponse()

    def find_neighbors(
        self, request: aiplatform_v1.FindNeighborsRequest, context: grpc.ServicerContext
    ) -> aiplatform_v1.FindNeighborsResponse:
        with self._lock:
            self.finds.append(request)
            points = dict(self.datapoints)
        self._maybe_fail(context)
        assert self.neighbors is not None, "set FakeVertex.neighbors to answer FindNeighbors"
        results = []
        for query in request.queries:
            found = self.neighbors(query, points)[: query.neighbor_count]
            results.append(
                aiplatform_v1.FindNeighborsResponse.NearestNeighbors(
                    id=query.datapoint.datapoint_id,
                    neighbors=[
                        aiplatform_v1.FindNeighborsResponse.Neighbor(
                            datapoint=aiplatform_v1.IndexDatapoint(datapoint_id=pid),
                            distance=distance,
                        )
                        for pid, distance in found
                    ],
                )
            )
        return aiplatform_v1.FindNeighborsResponse(nearest_neighbors=results)

    def predict(
        self, request: aiplatform_v1.PredictRequest, context: grpc.ServicerContext
    ) -> aiplatform_v1.PredictResponse:
        with self._lock:
            self.predicts.append(request)
        self._maybe_fail(context)
        assert self.embed is not None, "set FakeVertex.embed to answer Predict"
        response = aiplatform_v1.PredictResponse(deployed_model_id="")
        # Repeated google.protobuf.Value fields take Python values only through extend().
        response.predictions.extend(
            {
                "embeddings": {
                    "values": self.embed(instance["content"]),
                    # As Vertex reports them: the tokens it counted (here one per 4 characters).
                    "statistics": {"token_count": max(1, len(instance["content"]) // 4)},
                }
            }
            for instance in request.instances
        )
        return response


# Firestore's RPCs that only read; every other one writes (or opens a transaction that may).
_FIRESTORE_READS = frozenset(
    {
        "GetDocument",
        "ListDocuments",
        "BatchGetDocuments",
        "RunQuery",
        "RunAggregationQuery",
        "PartitionQuery",
        "Listen",
        "ListCollectionIds",
    }
)


class FirestoreGate(grpc.GenericRpcHandler):  # type: ignore[misc]
    """A plain-gRPC front for the Firestore emulator with the IAM check the emulator lacks.

    Every google.firestore.v1.Firestore call is forwarded as raw bytes (any cardinality: on the
    wire every call is a stream) with its metadata, once `authorize(caller, permission,
    "projects/P/databases/D")` allows datastore.entities.get (reads) or .update (writes);
    otherwise it fails with PERMISSION_DENIED "Missing or insufficient permissions.", Firestore's
    own answer.
    """

    def __init__(self, upstream: str, caller: str | None, authorize: Authorize) -> None:
        self.caller = caller
        self.authorize = authorize
        self.denials: list[Denial] = []
        self._lock = threading.Lock()
        self._channel = grpc.insecure_channel(upstream)
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
        self._server.add_generic_rpc_handlers((self,))
        port = self._server.add_insecure_port("127.0.0.1:0")
        self.endpoint = f"127.0.0.1:{port}"
        self._server.start()

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        if not method.startswith("/google.firestore.v1.Firestore/"):
            return None
        verb = "get" if method.rsplit("/", 1)[1] in _FIRESTORE_READS else "update"
        return grpc.stream_stream_rpc_method_handler(
            functools.partial(self._forward, method, f"datastore.entities.{verb}")
        )

    def _forward(
        self, method: str, permission: str, requests: Any, context: grpc.ServicerContext
    ) -> Any:
        metadata = tuple(context.invocation_metadata())
        params = dict(metadata).get("x-goog-request-params", "")
        database = _database_of(params) or "(unknown)"
        if not self.authorize(self.caller, permission, database):
            with self._lock:
                self.denials.append(Denial(self.caller, permission, database))
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "Missing or insufficient permissions.")
        call = self._channel.stream_stream(method)(
            requests, metadata=metadata, timeout=context.time_remaining()
        )
        context.add_callback(call.cancel)
        try:
            yield from call
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                context.abort(error.code(), error.details() or "")

    def stop(self) -> None:
        self._server.stop(grace=None)
        self._channel.close()


def _database_of(params: str) -> str | None:
    """The database resource (projects/P/databases/D) a call's x-goog-request-params name."""
    from urllib.parse import parse_qs

    for key, values in parse_qs(params).items():
        for value in values:
            parts = value.split("/")
            if key in {"database", "parent", "name"} and len(parts) >= 4 and parts[0] == "projects":
                return "/".join(parts[:4])
    return None
