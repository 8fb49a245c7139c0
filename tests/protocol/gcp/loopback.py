"""Loopback gRPC servers that speak Google Cloud APIs with the client libraries' own messages.

A `LoopbackServer` listens on 127.0.0.1 (plain gRPC) and routes each full method name
("/google.cloud.secretmanager.v1.SecretManagerService/AccessSecretVersion") to a Python handler;
requests are decoded and responses encoded by the proto-plus classes of the real client library,
so the bytes on the wire are what Google's servers exchange. Each fake records the requests it got.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import google_crc32c
import grpc
from google.cloud import aiplatform_v1, secretmanager_v1

Handler = Callable[[Any, grpc.ServicerContext], Any]


class LoopbackServer(grpc.GenericRpcHandler):  # type: ignore[misc]
    """A plain-gRPC server on 127.0.0.1 with handlers registered per method."""

    def __init__(self) -> None:
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
    access is PERMISSION_DENIED; `unavailable` counts calls still to fail with UNAVAILABLE;
    `corrupt` names secrets whose CRC32C is wrong.
    """

    versions: dict[tuple[str, str], list[bytes]] = field(default_factory=dict)
    denied: set[str] = field(default_factory=set)
    corrupt: set[str] = field(default_factory=set)
    unavailable: int = 0
    requests: list[secretmanager_v1.AccessSecretVersionRequest] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add_version(self, project: str, secret: str, data: bytes) -> int:
        with self._lock:
            self.versions.setdefault((project, secret), []).append(data)
            return len(self.versions[(project, secret)])

    def register(self, server: LoopbackServer) -> None:
        server.unary(
            "/google.cloud.secretmanager.v1.SecretManagerService/AccessSecretVersion",
            secretmanager_v1.AccessSecretVersionRequest,
            secretmanager_v1.AccessSecretVersionResponse,
            self.access_secret_version,
        )

    def access_secret_version(
        self, request: secretmanager_v1.AccessSecretVersionRequest, context: grpc.ServicerContext
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
    recorded for field-by-field checks.
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
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def register(self, server: LoopbackServer) -> None:
        server.unary(
            "/google.cloud.aiplatform.v1.IndexService/UpsertDatapoints",
            aiplatform_v1.UpsertDatapointsRequest,
            aiplatform_v1.UpsertDatapointsResponse,
            self.upsert_datapoints,
        )
        server.unary(
            "/google.cloud.aiplatform.v1.IndexService/RemoveDatapoints",
            aiplatform_v1.RemoveDatapointsRequest,
            aiplatform_v1.RemoveDatapointsResponse,
            self.remove_datapoints,
        )
        server.unary(
            "/google.cloud.aiplatform.v1.MatchService/FindNeighbors",
            aiplatform_v1.FindNeighborsRequest,
            aiplatform_v1.FindNeighborsResponse,
            self.find_neighbors,
        )
        server.unary(
            "/google.cloud.aiplatform.v1.PredictionService/Predict",
            aiplatform_v1.PredictRequest,
            aiplatform_v1.PredictResponse,
            self.predict,
        )

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
            {"embeddings": {"values": self.embed(instance["content"]), "statistics": {}}}
            for instance in request.instances
        )
        return response
