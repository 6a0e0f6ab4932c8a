-- What the pipeline stored, as one JSON document for compare.mjs: users, live posts, the day's snapshots.
-- psql -v date=YYYY-MM-DD -qAt -f dump.sql; times as RFC 3339 UTC with microseconds.
SELECT json_build_object(
  'users', (SELECT coalesce(json_agg(json_build_object(
      'did', did, 'handle', handle, 'displayName', "displayName", 'avatar', avatar) ORDER BY did), '[]') FROM users),
  'posts', (SELECT coalesce(json_agg(json_build_object(
      'uri', uri, 'did', did, 'likes', likes, 'replies', replies, 'quotes', quotes, 'reposts', reposts,
      'createdAt', to_char("createdAt" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
      'sortAt', to_char(sort_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')) ORDER BY uri), '[]')
    FROM posts WHERE deleted_at IS NULL),
  'snapshots', (SELECT coalesce(json_agg(json_build_object(
      'did', did, 'followers', followers, 'following', following, 'posts', posts,
      'likes', likes, 'replies', replies, 'quotes', quotes, 'reposts', reposts) ORDER BY did), '[]')
    FROM snapshots WHERE date = :'date'));
