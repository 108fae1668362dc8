-- ListCalendarFeeds shows a key the feeds it made (a `keys.manage` key sees
-- all of its tenant's): this index reads one key's feeds, in id order for
-- paging, without passing over the tenant's others, revoked ones included.
CREATE INDEX calendar_feeds_by_creator ON calendar_feeds (tenant_id, creator_key_id, id);
