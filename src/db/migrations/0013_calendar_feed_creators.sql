-- The API key that made each calendar feed: a feed answers only while that
-- key is not revoked, and only a key holding all of its scopes may revoke
-- the feed (src/db/calendar-feeds.ts). `env:HOLDFAST_ADMIN_KEY` for the
-- operator key, which is not stored and cannot be revoked. NULL for the
-- feeds made before this column existed: whoever made them is unknown, so
-- they keep answering until revoked, and any key that may read bookings
-- may revoke them. No foreign key: the operator key has no row.
ALTER TABLE calendar_feeds ADD COLUMN creator_key_id text;
