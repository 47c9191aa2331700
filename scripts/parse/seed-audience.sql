-- The push audience of the comparison: :n iOS installations in channel "bulk", written straight
-- into Parse Server's installation table (creating them through its REST API would take
-- minutes at its create rate). The columns are the ones Parse's PostgreSQL adapter creates for
-- _Installation; _rperm/_wperm NULL means public, as for installations created without ACL.
INSERT INTO "_Installation"
  ("objectId", "createdAt", "updatedAt", "installationId", "deviceToken", "deviceType",
   "channels", "appIdentifier", "timeZone", "localeIdentifier")
SELECT substr(md5('obj' || g::text), 1, 10), now(), now(), md5('inst' || g::text)::uuid::text,
       md5('tok-a' || g::text) || md5('tok-b' || g::text), 'ios',
       '["bulk"]'::jsonb, 'com.example.roster', 'Europe/Zagreb', 'en-US'
FROM generate_series(1, :n) AS g;
ANALYZE "_Installation";
