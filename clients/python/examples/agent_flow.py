"""An agent's booking flow with holdfast_client:
    python3 agent_flow.py HOST:PORT KEY SERVICE_ID
Prints what happened as JSON. test/client/python.test.ts runs it against a
live server from a copy of clients/python outside the repository."""

import json
import sys
import time
import uuid

from google.protobuf.timestamp_pb2 import Timestamp

from holdfast_client import Client, HoldfastError, availability_pb2, booking_pb2, event_pb2, resource_pb2

target, api_key, service_id = sys.argv[1:4]
DAY = 24 * 60 * 60
now = int(time.time())
start, end = Timestamp(seconds=now + DAY), Timestamp(seconds=now + 8 * DAY)

with Client(target, api_key) as hf:
    slots = hf.availability.list_slots(
        availability_pb2.ListSlotsRequest(service_id=service_id, start_time=start, end_time=end, page_size=3)
    ).slots
    slot_id = slots[0].slot_id

    # The agent picks the key, so a retry after its own crash is the same request.
    key = str(uuid.uuid4())
    hold = booking_pb2.CreateHoldRequest(slot_id=slot_id, attendee=booking_pb2.Attendee(name="Ada"))
    held = hf.bookings.create_hold(hold, idempotency_key=key).booking
    again = hf.bookings.create_hold(hold, idempotency_key=key).booking

    conflict = {}
    try:
        hf.bookings.create_hold(booking_pb2.CreateHoldRequest(slot_id=slot_id, attendee=booking_pb2.Attendee(name="Bob")))
    except HoldfastError as err:
        conflict = {"reason": err.reason, "code": err.code.name, "alternatives": [s.slot_id for s in err.alternatives]}

    invalid = {}
    try:
        hf.resources.create_resource(resource_pb2.CreateResourceRequest(name="Room", time_zone="Mars/Olympus_Mons"))
    except HoldfastError as err:
        invalid = {"reason": err.reason, "fields": [field for field, _ in err.field_violations]}

    confirmed = hf.bookings.confirm_booking(booking_pb2.ConfirmBookingRequest(booking_id=held.id)).booking
    cancelled = hf.bookings.cancel_booking(booking_pb2.CancelBookingRequest(booking_id=held.id, reason="plans changed")).booking

    # Follow the events: two, then resume after the second's cursor for the third.
    events, cursor = [], ""
    stream = hf.events.watch_events(event_pb2.WatchEventsRequest(from_beginning=True), timeout=20)
    for response in stream:
        if not response.HasField("event"):
            continue  # a heartbeat: only a cursor
        events.append(response.event.type)
        cursor = response.event.cursor
        if len(events) == 2:
            stream.cancel()
            break
    stream = hf.events.watch_events(event_pb2.WatchEventsRequest(after=cursor), timeout=20)
    for response in stream:
        if not response.HasField("event"):
            continue
        events.append(response.event.type)
        stream.cancel()
        break

    print(json.dumps({
        "slotId": slot_id,
        "held": held.id,
        "again": again.id,
        "conflict": conflict,
        "invalid": invalid,
        "confirmed": booking_pb2.BookingStatus.Name(confirmed.status),
        "cancelled": booking_pb2.BookingStatus.Name(cancelled.status),
        "events": events,
    }))
