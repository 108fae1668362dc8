"""Holdfast client for Python, over gRPC.

A thin layer over the stubs generated from proto/ (in ``_gen``, by Debian's
protoc and grpc_python_plugin): the API key on every call, an
Idempotency-Key on every mutation (yours or a fresh UUID), retries of
UNAVAILABLE and DEADLINE_EXCEEDED with the same key and exponential backoff
with jitter, and :class:`HoldfastError` carrying the server's reason, field
violations and, for SLOT_UNAVAILABLE, the free slots nearby.

    from holdfast_client import Client, HoldfastError, availability_pb2
    hf = Client("127.0.0.1:8080", "hf_...")
    slots = hf.availability.list_slots(availability_pb2.ListSlotsRequest(...)).slots
"""

import os
import random
import re
import sys
import time
import uuid

_GEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_gen")
if _GEN not in sys.path:
    # The generated modules import each other as holdfast.v1.* and google.rpc.*.
    sys.path.insert(0, _GEN)

import grpc  # noqa: E402
from google.protobuf import descriptor_pb2  # noqa: E402
from google.rpc import error_details_pb2, status_pb2  # noqa: E402
from holdfast.v1 import (  # noqa: E402
    availability_pb2,
    availability_pb2_grpc,
    booking_pb2,
    booking_pb2_grpc,
    calendar_feed_pb2,
    calendar_feed_pb2_grpc,
    catalog_pb2,
    catalog_pb2_grpc,
    errors_pb2,
    event_pb2,
    event_pb2_grpc,
    key_pb2,
    key_pb2_grpc,
    limits_pb2,
    resource_pb2,
    resource_pb2_grpc,
    tenant_pb2,
    tenant_pb2_grpc,
    webhook_pb2,
    webhook_pb2_grpc,
)

__all__ = [
    "Client",
    "HoldfastError",
    "availability_pb2",
    "booking_pb2",
    "calendar_feed_pb2",
    "catalog_pb2",
    "errors_pb2",
    "event_pb2",
    "key_pb2",
    "limits_pb2",
    "resource_pb2",
    "tenant_pb2",
    "webhook_pb2",
]

_RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
_MAX_BACKOFF = 2.0


class HoldfastError(Exception):
    """A failed call: ``code`` (grpc.StatusCode), ``reason`` (the server's
    stable reason, e.g. "SLOT_UNAVAILABLE"; from the code when the error did
    not come from a server), ``message``, ``field_violations`` ([(field,
    description)]), ``alternatives`` ([availability_pb2.Slot]) and
    ``conflicts`` ([errors_pb2.ConflictingRange])."""

    def __init__(self, code, reason, message, field_violations=(), alternatives=(), conflicts=(), metadata=None):
        super().__init__(f"{reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.field_violations = list(field_violations)
        self.alternatives = list(alternatives)
        self.conflicts = list(conflicts)
        self.metadata = dict(metadata or {})

    @classmethod
    def from_rpc_error(cls, err):
        code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
        message = (err.details() if hasattr(err, "details") else "") or ""
        status = status_pb2.Status()
        for key, value in (err.trailing_metadata() if hasattr(err, "trailing_metadata") else None) or ():
            if key == "grpc-status-details-bin":
                status.ParseFromString(value)
        reason, metadata, violations, alternatives, conflicts = None, {}, [], [], []
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason, metadata = info.reason, dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations += [(v.field, v.description) for v in bad.field_violations]
            elif detail.Is(errors_pb2.SlotConflict.DESCRIPTOR):
                conflict = errors_pb2.SlotConflict()
                detail.Unpack(conflict)
                alternatives += list(conflict.alternatives)
                conflicts += list(conflict.conflicts)
        if reason is None:
            reason = {
                grpc.StatusCode.DEADLINE_EXCEEDED: "DEADLINE_EXCEEDED",
                grpc.StatusCode.CANCELLED: "CANCELLED",
            }.get(code, "UNAVAILABLE")
        return cls(code, reason, message, violations, alternatives, conflicts, metadata)


def _snake(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class _Service:
    """The methods of one service, by their snake_case names (``create_hold``)."""

    def __init__(self, client, stub, service_descriptor):
        self.full_name = service_descriptor.full_name
        for method in service_descriptor.methods:
            call = getattr(stub, method.name)
            level = method.GetOptions().idempotency_level
            mutation = level != descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS
            if method.server_streaming:
                wrapped = client._stream(call)
            else:
                wrapped = client._unary(call, mutation)
            setattr(self, _snake(method.name), wrapped)


class Client:
    """Typed stubs for every Holdfast service on one gRPC channel.

    ``target`` is "host:port" (plaintext) unless you pass your own ``channel``
    (e.g. ``grpc.secure_channel``). Each unary method takes the request and
    optionally ``idempotency_key=``, ``timeout=`` (seconds) and ``metadata=``;
    streaming methods return an iterator with ``cancel()``.
    """

    def __init__(self, target, api_key, *, channel=None, max_attempts=4, initial_backoff=0.1):
        self._channel = channel or grpc.insecure_channel(target)
        self._api_key = api_key
        self._max_attempts = max_attempts
        self._initial_backoff = initial_backoff
        ch = self._channel

        def service(stub, module, name):
            return _Service(self, stub(ch), module.DESCRIPTOR.services_by_name[name])

        self.availability = service(availability_pb2_grpc.AvailabilityServiceStub, availability_pb2, "AvailabilityService")
        self.bookings = service(booking_pb2_grpc.BookingServiceStub, booking_pb2, "BookingService")
        self.calendar_feeds = service(
            calendar_feed_pb2_grpc.CalendarFeedServiceStub, calendar_feed_pb2, "CalendarFeedService"
        )
        self.catalog = service(catalog_pb2_grpc.CatalogServiceStub, catalog_pb2, "CatalogService")
        self.events = service(event_pb2_grpc.EventServiceStub, event_pb2, "EventService")
        self.keys = service(key_pb2_grpc.KeyServiceStub, key_pb2, "KeyService")
        self.resources = service(resource_pb2_grpc.ResourceServiceStub, resource_pb2, "ResourceService")
        self.tenants = service(tenant_pb2_grpc.TenantServiceStub, tenant_pb2, "TenantService")
        self.webhooks = service(webhook_pb2_grpc.WebhookServiceStub, webhook_pb2, "WebhookService")

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _metadata(self, extra):
        return [("authorization", f"Bearer {self._api_key}")] + list(extra or ())

    def _unary(self, call, mutation):
        def invoke(request, *, idempotency_key=None, timeout=None, metadata=None):
            md = self._metadata(metadata)
            if mutation:
                # Chosen once: every retry sends the same key, so it never books twice.
                md.append(("idempotency-key", idempotency_key or str(uuid.uuid4())))
            attempt = 1
            while True:
                try:
                    return call(request, metadata=md, timeout=timeout)
                except grpc.RpcError as err:
                    if err.code() not in _RETRYABLE or attempt >= self._max_attempts:
                        raise HoldfastError.from_rpc_error(err) from err
                    ceiling = min(self._initial_backoff * 2 ** (attempt - 1), _MAX_BACKOFF)
                    time.sleep(ceiling / 2 + random.random() * ceiling / 2)
                    attempt += 1

        return invoke

    def _stream(self, call):
        def invoke(request, *, timeout=None, metadata=None):
            return _Stream(call(request, metadata=self._metadata(metadata), timeout=timeout))

        return invoke


class _Stream:
    """A server stream whose errors are HoldfastErrors; ``cancel()`` ends it."""

    def __init__(self, responses):
        self._responses = responses

    def __iter__(self):
        return self

    def __next__(self):
        try:
            return next(self._responses)
        except grpc.RpcError as err:
            raise HoldfastError.from_rpc_error(err) from err

    def cancel(self):
        self._responses.cancel()
