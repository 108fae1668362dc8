-- Every secret a rotation retired keeps signing until its own 24 hours are
-- up, however many rotations follow within the day: receivers that still
-- hold any of them keep verifying. One column pair held only one, so a
-- second rotation within a day stopped the first secret at once.
ALTER TABLE webhooks
  ADD COLUMN previous_secrets bytea[] NOT NULL DEFAULT '{}',
  ADD COLUMN previous_secrets_expire timestamptz[] NOT NULL DEFAULT '{}';

UPDATE webhooks
SET previous_secrets = ARRAY[previous_secret],
    previous_secrets_expire = ARRAY[previous_secret_expires]
WHERE previous_secret IS NOT NULL AND previous_secret_expires > now();

ALTER TABLE webhooks
  DROP COLUMN previous_secret,
  DROP COLUMN previous_secret_expires,
  ADD CONSTRAINT previous_secrets_paired
    CHECK (cardinality(previous_secrets) = cardinality(previous_secrets_expire));
