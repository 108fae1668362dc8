-- Retention's marker per tenant: the newest position of each tenant's events
-- that retention deleted. A cursor expires only when events of its own
-- tenant after it were deleted, so every cursor a tenant is given can be a
-- position of its own events (or before its first): none has to be the
-- outbox's head, whose moves would tell a tenant when other tenants wrote.
CREATE TABLE outbox_pruned_tenants (
  tenant_id text PRIMARY KEY,
  xid xid8 NOT NULL,
  seq bigint NOT NULL
);

-- What was pruned before is known only as one position for all: every
-- tenant of then keeps it, so no cursor that expired before expires less now.
INSERT INTO outbox_pruned_tenants (tenant_id, xid, seq)
SELECT t.id, p.xid, p.seq FROM tenants t CROSS JOIN outbox_pruned p;

DROP TABLE outbox_pruned;
