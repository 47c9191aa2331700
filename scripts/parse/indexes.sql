-- The indexes a fair Parse Server deployment has on its installation table (issue 7): lookups
-- by installationId and deviceToken on every create, and push queries by channel.
CREATE INDEX IF NOT EXISTS bench_installation_id ON "_Installation" ("installationId");
CREATE INDEX IF NOT EXISTS bench_device_token ON "_Installation" ("deviceToken");
CREATE INDEX IF NOT EXISTS bench_channels ON "_Installation" USING gin ("channels");
