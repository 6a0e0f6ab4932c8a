// The suite's accounts and what they do, written through the PDS with @atproto/api: the initial
// seed (before day 1) and the rounds of changes before day 2 and day 3. Deterministic from the seed.
//
// Times are relative to the wall clock at seeding (the AppView stamps indexedAt with it), so the
// refresh window of a run at DS_NOW = now + N days covers the "recent" posts and not the "old" ones.
const MIN = 60_000;
const DAY = 24 * 60 * MIN;
// 1x1 PNG, enough for the PDS to accept an avatar blob.
const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==',
  'base64',
);

function mulberry32(a) {
  return () => {
    a |= 0;
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const iso = (ms) => new Date(ms).toISOString();
const noMillis = (ms) => iso(ms).replace(/\.\d{3}Z$/, 'Z');
// The same instant written with an offset: 2026-11-13T08:00:00+02:00.
function withOffset(ms, hours) {
  const local = new Date(ms + hours * 3600_000).toISOString().replace(/\.\d{3}Z$/, '');
  const sign = hours >= 0 ? '+' : '-';
  return `${local}${sign}${String(Math.abs(hours)).padStart(2, '0')}:00`;
}

export class Seeder {
  constructor(network, seed, log) {
    this.network = network;
    this.rng = mulberry32(seed);
    this.log = log;
    this.base = Math.floor(Date.now() / MIN) * MIN - 10 * MIN;
    this.acc = new Map(); // name -> {name, did, handle, agent, status}
    this.refs = {}; // named posts: {uri, cid}
  }

  accounts() {
    return [...this.acc.values()].map(({ name, did, handle, status }) => ({ name, did, handle, status }));
  }

  int(lo, hi) {
    return lo + Math.floor(this.rng() * (hi - lo + 1));
  }

  async account(name, displayName) {
    const agent = this.network.pds.getAgent();
    const handle = `av-${name}.test`;
    await agent.createAccount({ email: `${name}@test.invalid`, handle, password: `pw-${name}` });
    const a = { name, did: agent.accountDid, handle, agent, status: 'active' };
    this.acc.set(name, a);
    if (displayName !== undefined) await this.profile(name, { displayName });
    return a;
  }

  async profile(name, fields) {
    const { agent } = this.acc.get(name);
    await agent.upsertProfile((old) => ({ ...(old || {}), ...fields }));
  }

  // post NAME TEXT [createdAt] [{reply, embed, validate}]: one post record; returns {uri, cid}.
  async post(name, text, createdAt, extra = {}) {
    const a = this.acc.get(name);
    const { validate, ...fields } = extra;
    const record = { $type: 'app.bsky.feed.post', text, createdAt: createdAt ?? iso(Date.now()), ...fields };
    const res = await a.agent.com.atproto.repo.createRecord({
      repo: a.did, collection: 'app.bsky.feed.post', record, validate: validate ?? true,
    });
    return { uri: res.data.uri, cid: res.data.cid };
  }

  // Many posts in few requests (applyWrites takes 200 writes): N posts, the newest at `newest`, a minute apart.
  async bulk(name, n, newest) {
    const a = this.acc.get(name);
    for (let start = 0; start < n; start += 100) {
      const writes = [];
      for (let i = start; i < Math.min(n, start + 100); i++) {
        writes.push({
          $type: 'com.atproto.repo.applyWrites#create',
          collection: 'app.bsky.feed.post',
          value: { $type: 'app.bsky.feed.post', text: `${name} post ${i}`, createdAt: iso(newest - i * MIN) },
        });
      }
      await a.agent.com.atproto.repo.applyWrites({ repo: a.did, writes });
    }
  }

  async like(name, ref) {
    return (await this.acc.get(name).agent.like(ref.uri, ref.cid)).uri;
  }

  async repost(name, ref) {
    return (await this.acc.get(name).agent.repost(ref.uri, ref.cid)).uri;
  }

  async follow(name, target) {
    return (await this.acc.get(name).agent.follow(this.acc.get(target).did)).uri;
  }

  async initial() {
    const b = this.base;
    await this.account('empty', 'Émilie 東京 🦋 Ωmega');
    await this.account('feed100');
    await this.account('feed101', 'Hundred and One');
    await this.account('pages', 'Pages');
    await this.account('social', 'Zoë Ångström');
    await this.account('fan', 'Fan');
    await this.account('mover', 'Mover');
    await this.account('taker', 'Taker');
    await this.account('sleeper', 'Sleeper');
    await this.account('goner', 'Goner');
    await this.account('echo', 'Echo');

    const social = this.acc.get('social');
    const blob = await social.agent.uploadBlob(PNG, { encoding: 'image/png' });
    await this.profile('social', { avatar: blob.data.blob });

    // Feeds of exactly 100 and 101 items; one whose refresh window spans several pages.
    await this.bulk('feed100', 100, b - 5 * MIN);
    await this.bulk('feed101', 101, b - 5 * MIN);
    this.pagesCount = this.int(230, 260);
    await this.bulk('pages', this.pagesCount, b - 2 * MIN);
    const newestOf = async (name) => {
      const a = this.acc.get(name);
      const r = await a.agent.com.atproto.repo.listRecords({ repo: a.did, collection: 'app.bsky.feed.post', limit: 1 });
      return { uri: r.data.records[0].uri, cid: r.data.records[0].cid };
    };
    this.refs.feed100 = await newestOf('feed100');
    this.refs.feed101 = await newestOf('feed101');
    this.refs.pages = await newestOf('pages');

    // createdAt in several spellings: old ones (outside the window from day 2 on), recent ones, a
    // future one; and two that are not RFC 3339 at all, written without the PDS's validation.
    const r = this.refs;
    r.oldZ = await this.post('social', 'old, Z with millis', iso(b - 20 * DAY));
    r.oldNoMillis = await this.post('social', 'old, no fraction', noMillis(b - 20 * DAY - 60 * MIN));
    r.oldMicros = await this.post('social', 'old, micros and +00:00',
      iso(b - 21 * DAY).replace(/\.\d{3}Z$/, '.123456+00:00'));
    r.offset = await this.post('social', 'recent, +02:00', withOffset(b - 3 * 60 * MIN, 2));
    r.negOffset = await this.post('social', 'recent, -05:30 style', withOffset(b - 4 * 60 * MIN, -5).replace(/:00$/, ':30'));
    r.future = await this.post('social', 'from the future', iso(b + 30 * DAY));
    r.noZone = await this.post('social', 'no time zone', iso(b - 5 * 60 * MIN).replace(/\.\d{3}Z$/, ''), { validate: false });
    r.garbage = await this.post('social', 'not a date', 'yesterday at noon', { validate: false });
    for (let i = 1; i <= 5; i++) r[`r${i}`] = await this.post('social', `recent ${i}`, iso(b - (6 + i) * 60 * MIN));

    // Replies (to another account and to oneself), a quote, a self-repost and a repost of another.
    r.replyOther = await this.post('social', 'reply to pages', iso(b - 60 * MIN), {
      reply: { root: r.pages, parent: r.pages },
    });
    r.replySelf = await this.post('social', 'reply to myself', iso(b - 50 * MIN), { reply: { root: r.r1, parent: r.r1 } });
    r.quote = await this.post('social', 'quoting feed100', iso(b - 40 * MIN), {
      embed: { $type: 'app.bsky.embed.record', record: r.feed100 },
    });
    await this.repost('social', r.r2);
    await this.repost('social', r.feed101);
    // A post created and deleted before any run: never stored.
    const gone = await this.post('social', 'deleted at once', iso(b - 30 * MIN));
    await social.agent.deletePost(gone.uri);

    // Likes, reposts, quotes and replies from others, a random share of them.
    for (const k of ['r1', 'r2', 'r3', 'r4', 'oldZ', 'future', 'replySelf']) {
      for (const who of ['fan', 'pages', 'feed100', 'goner']) {
        // goner's likes sit on window posts only: after its deletion they are the AppView's to drop,
        // and a post outside the window keeps its stored counts by design (docs/request-economy.md).
        if (who === 'goner' && k === 'oldZ') continue;
        const must = (k === 'r2' && who === 'fan') || (k === 'r1' && who === 'goner');
        if (must || this.rng() < 0.6) r[`like_${who}_${k}`] = await this.like(who, r[k]);
      }
    }
    await this.repost('fan', r.r3);
    await this.repost('pages', r.r1);
    r.fanQuote = await this.post('fan', 'fan quotes social', iso(b - 20 * MIN), {
      embed: { $type: 'app.bsky.embed.record', record: r.r2 },
    });
    r.fanReply = await this.post('fan', 'fan replies', iso(b - 15 * MIN), { reply: { root: r.r1, parent: r.r1 } });
    for (const t of ['social', 'pages', 'feed100', 'sleeper', 'empty']) r[`follow_fan_${t}`] = await this.follow('fan', t);
    await this.follow('social', 'pages');
    await this.follow('pages', 'social');
    for (const name of ['mover', 'taker', 'sleeper', 'goner']) {
      for (let i = 0; i < this.int(1, 3); i++) r[`${name}${i}`] = await this.post(name, `${name} ${i}`, iso(b - (70 + i) * MIN));
    }
    // A self-repost of an old post as the 100th item of a feed whose next page still holds window
    // posts: the repost record's own createdAt places it there (the feed sorts reposts by it).
    const echo = this.acc.get('echo');
    r.echoOld = await this.post('echo', 'echo, old', iso(b - 25 * DAY));
    await this.bulk('echo', 150, b - 3 * MIN);
    await echo.agent.com.atproto.repo.createRecord({
      repo: echo.did, collection: 'app.bsky.feed.repost',
      record: { $type: 'app.bsky.feed.repost', subject: r.echoOld, createdAt: iso(b - 3 * MIN - 98 * MIN - 30_000) },
    });
    this.log(`seeded ${this.acc.size} accounts (pages: ${this.pagesCount} posts)`);
  }

  // The AppView verifies a handle when it indexes the account's identity event, by resolving it
  // back to the DID. A round that moves a handle from one account to another can leave one of them
  // "handle.invalid" (seen once in CI: mover, after its change and taker's takeover of its old
  // handle). Until the AppView shows every active account under the handle it has, send that
  // account's identity event again (updateHandle to the same handle, as the PDS suggests) and
  // index it. Returns how many times it had to.
  async settleHandles(processAll) {
    const appview = this.network.bsky.getAgent();
    for (let attempt = 0; ; attempt++) {
      const active = [...this.acc.values()].filter((a) => a.status === 'active');
      const { data } = await appview.app.bsky.actor.getProfiles({ actors: active.map((a) => a.did) });
      const shown = new Map(data.profiles.map((p) => [p.did, p.handle]));
      const wrong = active.filter((a) => shown.has(a.did) && shown.get(a.did) !== a.handle);
      if (wrong.length === 0) return attempt;
      const what = wrong.map((a) => `${a.name} shown as ${shown.get(a.did)}, not ${a.handle}`).join('; ');
      if (attempt === 10) throw new Error(`the AppView still has ${what}`);
      this.log(`settling handles: ${what}; sending their identity events again`);
      for (const a of wrong) await a.agent.com.atproto.identity.updateHandle({ handle: a.handle });
      await processAll();
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  async round(k) {
    const r = this.refs;
    const now = Date.now();
    if (k === 1) {
      const social = this.acc.get('social');
      await this.acc.get('fan').agent.deleteLike(r.like_fan_r2); // a like undone
      await social.agent.deletePost(r.r5.uri); // a post deleted after day 1 stored it
      r.n1 = await this.post('social', 'new on day 2', iso(now - MIN));
      await this.profile('social', { displayName: 'Zoë Ångström ✨' });
      await this.like('fan', r.n1);
      await this.acc.get('feed101').agent.deletePost(r.feed101.uri); // 101 -> 100 items
      r.feed100b = await this.post('feed100', 'feed100 grows to 101', iso(now - 2 * MIN)); // 100 -> 101
      await this.acc.get('fan').agent.deleteFollow(r.follow_fan_pages);

      // A handle change, and the old handle taken over by another tracked account.
      const mover = this.acc.get('mover');
      const taker = this.acc.get('taker');
      const oldHandle = mover.handle;
      await mover.agent.com.atproto.identity.updateHandle({ handle: "av-moved.test" });
      mover.handle = "av-moved.test";
      await taker.agent.com.atproto.identity.updateHandle({ handle: oldHandle });
      taker.handle = oldHandle;

      // Deactivated (back in round 2) and deleted accounts.
      const sleeper = this.acc.get('sleeper');
      await sleeper.agent.com.atproto.server.deactivateAccount({});
      sleeper.status = 'deactivated';
      const goner = this.acc.get('goner');
      await this.network.pds.getAgent().com.atproto.admin.deleteAccount(
        { did: goner.did },
        { headers: this.network.pds.adminAuthHeaders(), encoding: 'application/json' },
      );
      goner.status = 'deleted';
      return 'likes undone, a post deleted, a post created, feeds 100<->101, handle change and takeover, sleeper deactivated, goner deleted';
    }
    if (k === 2) {
      const sleeper = this.acc.get('sleeper');
      await sleeper.agent.com.atproto.server.activateAccount();
      sleeper.status = 'active';
      return 'sleeper reactivated';
    }
    throw new Error(`no round ${k}`);
  }
}
