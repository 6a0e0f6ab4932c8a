// Compares what the pipeline stored with what the AppView itself says, read here with @atproto/api
// and psql's JSON, never through the project's C++: one line per difference, naming account and column.
//
//   node compare.mjs --appview URL --db-json FILE --date YYYY-MM-DD [--state FILE]
//
// FILE is dump.sql's output. Exit 0 when everything agrees, 1 with "MISMATCH ..." lines otherwise.
// Expected values follow the AppView, not docs/records.md: own posts are the feed items whose author
// is the account (a repost of one's own post is the same post again); createdAt is the record's
// when it is an RFC 3339 datetime, else indexedAt; the sort time is the earlier of the two.
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { AtpAgent } from '@atproto/api';

const { values: opt } = parseArgs({
  options: { appview: { type: 'string' }, 'db-json': { type: 'string' }, date: { type: 'string' }, state: { type: 'string' } },
});
if (!opt.appview || !opt['db-json'] || !opt.date) {
  console.error('usage: node compare.mjs --appview URL --db-json FILE --date YYYY-MM-DD [--state FILE]');
  process.exit(2);
}
const db = JSON.parse(fs.readFileSync(opt['db-json'], 'utf8'));
const names = new Map();
if (opt.state) for (const a of JSON.parse(fs.readFileSync(opt.state, 'utf8')).accounts) names.set(a.did, a.name);
const agent = new AtpAgent({ service: opt.appview });

const problems = [];
let checks = 0;
const who = (did) => (names.has(did) ? `${names.get(did)} (${did})` : did);
function same(did, column, expected, stored) {
  checks++;
  if (expected !== stored) {
    problems.push(`MISMATCH account ${who(did)} ${column}: expected ${JSON.stringify(expected)}, stored ${JSON.stringify(stored)}`);
  }
}

// Microseconds since the epoch of an RFC 3339 datetime (atproto's datetime: T, a zone, any fraction),
// or null. Date.parse keeps only milliseconds, so the fraction is added separately.
const RFC3339 = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})$/;
function micros(s) {
  const m = typeof s === 'string' && s.match(RFC3339);
  if (!m) return null;
  const secs = Date.parse(`${m[1]}${m[3]}`);
  if (Number.isNaN(secs)) return null;
  return BigInt(secs) * 1000n + BigInt(((m[2] || '') + '000000').slice(0, 6));
}
const fmt = (us) => {
  if (us === null) return null;
  const ms = Number(us / 1000n);
  const frac = String(us % 1000000n).padStart(6, '0');
  return `${new Date(ms).toISOString().slice(0, 19)}.${frac}Z`;
};

async function profilesOf(dids) {
  const out = new Map();
  for (let i = 0; i < dids.length; i += 25) {
    const res = await agent.app.bsky.actor.getProfiles({ actors: dids.slice(i, i + 25) });
    for (const p of res.data.profiles) out.set(p.did, p);
  }
  return out;
}

async function ownPosts(did) {
  const posts = new Map();
  let cursor;
  for (let page = 0; page < 100; page++) {
    const res = await agent.app.bsky.feed.getAuthorFeed({ actor: did, limit: 100, cursor });
    for (const item of res.data.feed) {
      const p = item.post;
      if (p.author.did !== did || posts.has(p.uri)) continue;
      const created = micros(p.record.createdAt) ?? micros(p.indexedAt);
      const indexed = micros(p.indexedAt);
      posts.set(p.uri, {
        likes: p.likeCount ?? 0, replies: p.replyCount ?? 0, quotes: p.quoteCount ?? 0, reposts: p.repostCount ?? 0,
        createdAt: fmt(created), sortAt: fmt(created < indexed ? created : indexed),
      });
    }
    cursor = res.data.cursor;
    if (!cursor) return posts;
  }
  throw new Error(`getAuthorFeed of ${did} did not end in 100 pages`);
}

const users = db.users ?? [];
const storedPosts = new Map();
for (const p of db.posts ?? []) {
  if (!storedPosts.has(p.did)) storedPosts.set(p.did, new Map());
  storedPosts.get(p.did).set(p.uri, p);
}
const snapshots = new Map((db.snapshots ?? []).map((s) => [s.did, s]));
const profiles = await profilesOf(users.map((u) => u.did));
const COUNTS = ['likes', 'replies', 'quotes', 'reposts'];

for (const u of users) {
  const did = u.did;
  const profile = profiles.get(did);
  const snap = snapshots.get(did);
  if (!profile) {
    // The AppView leaves the account out (deactivated, deleted): no snapshot can be right that day.
    same(did, `snapshot ${opt.date} (the AppView has no profile)`, 'none', snap ? 'a row' : 'none');
    continue;
  }
  same(did, 'users.handle', profile.handle, u.handle);
  same(did, 'users.displayName', profile.displayName ?? null, u.displayName);
  same(did, 'users.avatar', profile.avatar ?? null, u.avatar);
  if (!snap) {
    same(did, `snapshot ${opt.date}`, 'a row', 'none');
    continue;
  }
  same(did, 'snapshots.followers', profile.followersCount ?? 0, snap.followers);
  same(did, 'snapshots.following', profile.followsCount ?? 0, snap.following);
  same(did, 'snapshots.posts', profile.postsCount ?? 0, snap.posts);

  const expected = await ownPosts(did);
  const stored = storedPosts.get(did) ?? new Map();
  for (const c of COUNTS) {
    let sum = 0;
    for (const p of expected.values()) sum += p[c];
    same(did, `snapshots.${c} (sum over own posts)`, sum, snap[c]);
  }
  for (const [uri, e] of expected) {
    const s = stored.get(uri);
    if (!s) {
      same(did, `posts row ${uri}`, 'live', 'missing or deleted');
      continue;
    }
    for (const c of COUNTS) same(did, `posts.${c} of ${uri}`, e[c], s[c]);
    same(did, `posts.createdAt of ${uri}`, e.createdAt, s.createdAt);
    same(did, `posts.sort_at of ${uri}`, e.sortAt, s.sortAt);
  }
  for (const uri of stored.keys()) {
    if (!expected.has(uri)) same(did, `posts row ${uri}`, 'absent or deleted (not in the feed)', 'live');
  }
}

for (const p of problems) console.log(p);
console.log(`compare ${opt.date}: ${users.length} accounts, ${checks} checks, ${problems.length} mismatches`);
process.exit(problems.length ? 1 : 0);
