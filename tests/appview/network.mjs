// Starts Bluesky's own PLC, PDS and AppView (TestNetwork from @atproto/dev-env) on 127.0.0.1, seeds
// the suite's accounts through the PDS, then applies rounds of changes when the driver asks.
//
//   node network.mjs --db URL --seed N --state FILE
//
// FILE receives {appview, control, accounts} once the seed is indexed; POST http://127.0.0.1:CONTROL/round/K
// applies round K (seed.mjs) and answers when the AppView has indexed it; POST /quit stops everything.
// Nothing here listens beyond loopback: every server of the network is made to bind 127.0.0.1.
import dns from 'node:dns';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { parseArgs } from 'node:util';

// dev-env's services call listen(port) (all interfaces) and name each other http://localhost:PORT.
// Binding loopback keeps the suite's traffic on the machine; ipv4first makes "localhost" reach it.
dns.setDefaultResultOrder('ipv4first');
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const first = args[0];
  if (typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first))) {
    if (args.length === 1 || typeof args[1] === 'function') args.splice(1, 0, '127.0.0.1');
  } else if (first && typeof first === 'object' && first.host === undefined && first.path === undefined) {
    args[0] = { ...first, host: '127.0.0.1' };
  }
  return listen.apply(this, args);
};

const { values: opt } = parseArgs({
  options: { db: { type: 'string' }, seed: { type: 'string', default: '1' }, state: { type: 'string' } },
});
if (!opt.db || !opt.state) {
  console.error('usage: node network.mjs --db URL --seed N --state FILE');
  process.exit(2);
}
// dev-env 0.6 asserts REDIS_HOST but no service of TestNetwork connects to it (docs/real-appview.md).
process.env.REDIS_HOST ||= '127.0.0.1:1';

const { TestNetwork } = await import('@atproto/dev-env');
const { Seeder } = await import('./seed.mjs');

const log = (...a) => console.error(`[network ${new Date().toISOString()}]`, ...a);
const t0 = Date.now();
const network = await TestNetwork.create({ dbPostgresUrl: opt.db, dbPostgresSchema: 'ds' });
log(`TestNetwork up in ${Date.now() - t0} ms: appview ${network.bsky.url}, pds ${network.pds.url}`);

let closing = false;
async function shutdown(code) {
  if (closing) return;
  closing = true;
  // close() indexes what is pending first; bounded so a stuck service cannot hold the suite.
  await Promise.race([network.close().catch((e) => log('close:', e.message)), new Promise((r) => setTimeout(r, 10000))]);
  process.exit(code);
}
process.on('SIGTERM', () => shutdown(0));
process.on('SIGINT', () => shutdown(0));

const seeder = new Seeder(network, Number(opt.seed), log);
try {
  await seeder.initial();
  await network.processAll(20000);
  await seeder.settleHandles(() => network.processAll(20000));
} catch (e) {
  log('seeding failed:', e.stack || e);
  await shutdown(1);
}

let busy = Promise.resolve();
const control = http.createServer((req, res) => {
  const reply = (status, body) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  const m = req.method === 'POST' && req.url.match(/^\/round\/(\d+)$/);
  if (req.method === 'POST' && req.url === '/quit') {
    reply(200, { ok: true });
    shutdown(0);
  } else if (m) {
    // Rounds run one at a time, and the answer waits until the AppView has indexed them.
    busy = busy.then(async () => {
      try {
        const done = await seeder.round(Number(m[1]));
        await network.processAll(20000);
        await seeder.settleHandles(() => network.processAll(20000));
        reply(200, { ok: true, done, accounts: seeder.accounts() });
      } catch (e) {
        log(`round ${m[1]} failed:`, e.stack || e);
        reply(500, { ok: false, error: String(e.message || e) });
      }
    });
  } else {
    reply(404, { ok: false, error: 'POST /round/K or /quit' });
  }
});
control.listen(0, '127.0.0.1', () => {
  const state = { appview: network.bsky.url, pds: network.pds.url, control: control.address().port, accounts: seeder.accounts() };
  fs.writeFileSync(`${opt.state}.tmp`, JSON.stringify(state, null, 1));
  fs.renameSync(`${opt.state}.tmp`, opt.state);
  log(`ready: ${JSON.stringify({ appview: state.appview, control: state.control })}`);
});
