// Several pgwarden instances behind one load balancer (issue 18): a CancelRequest cancels the
// statement whichever instance reads it (--peer-id/--peer: the instance id rides in the cancel
// key, and the reader forwards it to its owner), a forwarded request is never passed on again
// (misconfigured peers cannot bounce it), and the admin CLI with several --admin URLs lists every
// instance's approvals and sessions and decides on the instance that holds the ID.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import net from 'node:net';
import { mkdtempSync, writeFileSync, chmodSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { env, withClient, startGateway, sleep, makeIdp, adminCall, adminPort, metricsToken } from './lib.mjs';

const SECRET = { ins_agent: 'ins-agent-Secret-1', ins_dba: 'ins-dba-Secret-2' };
const POLICY = {
  admins: ['gateway-admins'],
  role_mappings: [
    { group: 'agents', role: 'ins_agent', database: 'postgres' },
    { group: 'dba-oncall', role: 'ins_dba', database: 'postgres' },
  ],
  rules: [{ name: 'agents-hold', groups: ['agents'], require_approval: ['drop'], approvers: ['dba-oncall'] }],
};
let dir, idp, scrape, gw1, gw2, port1, port2;
const tokens = {};
const emails = { agent: 'agent-9@example.com', dba: 'dora@example.com', root: 'rita@example.com' };

const freePort = () => new Promise((resolve, reject) => {
  const s = net.createServer().listen(0, '127.0.0.1', () => {
    const { port } = s.address();
    s.close(() => resolve(port));
  }).on('error', reject);
});

// A gateway of the pair: its own --listen and --peer-id, the same --peer list as the other.
const instance = (id, port, peers, extra = []) => startGateway(['--listen', `127.0.0.1:${port}`, '--threads', '2',
  '--upstream', `127.0.0.1:${env.pgPort}`, '--policy', join(dir, 'policy.json'), '--upstream-secrets', join(dir, 'secrets'),
  '--jwks-file', idp.file, '--oidc-issuer', idp.issuer, '--oidc-audience', idp.audience, '--allow-plaintext-auth',
  '--admin-listen', '127.0.0.1:0', ...scrape.flags, '--peer-id', String(id), ...peers.flatMap((p) => ['--peer', p]), ...extra]);

const connect = async (who, port) => {
  const c = new pg.Client({ host: '127.0.0.1', port, user: emails[who], password: tokens[who], database: 'postgres' });
  c.on('error', () => {});
  await c.connect();
  return c;
};

// A CancelRequest (16 bytes) with this key, sent to `port` as a load balancer would pass it on.
const sendCancel = (port, pid, secret) => new Promise((resolve, reject) => {
  const b = Buffer.alloc(16);
  b.writeInt32BE(16, 0);
  b.writeInt32BE(80877102, 4);
  b.writeInt32BE(pid, 8);
  b.writeInt32BE(secret, 12);
  const s = net.connect(port, '127.0.0.1', () => s.end(b));
  s.on('close', resolve);
  s.on('error', reject);
});

// A counter summed over the cores of one instance.
async function counter(gw, name) {
  const r = await adminCall(gw, 'GET', '/metrics', { token: scrape.token });
  assert.equal(r.status, 200, r.text);
  let sum = 0;
  for (const m of r.text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+)$`, 'gm'))) sum += Number(m[1]);
  return sum;
}

const tool = (args, token, extraEnv = {}) => new Promise((resolve) => execFile(env.bin, args,
  { env: { ...process.env, PGWARDEN_TOKEN: token, ...extraEnv } }, (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stdout, stderr })));
const admins = () => ['--admin', `http://127.0.0.1:${adminPort(gw1)}`, '--admin', `http://127.0.0.1:${adminPort(gw2)}`];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pgw-instances-'));
  idp = await makeIdp(dir, { audience: 'pgwarden-ins' });
  scrape = metricsToken(dir);
  await withClient(env.pgPort, async (c) => {
    for (const [role, pw] of Object.entries(SECRET)) {
      await c.query(`DROP ROLE IF EXISTS ${role}`);
      await c.query(`CREATE ROLE ${role} LOGIN PASSWORD '${pw}'`);
    }
    await c.query('DROP SCHEMA IF EXISTS ins CASCADE');
    await c.query('CREATE SCHEMA ins AUTHORIZATION ins_agent');
  });
  writeFileSync(join(dir, 'policy.json'), JSON.stringify(POLICY));
  writeFileSync(join(dir, 'secrets'), Object.entries(SECRET).map(([r, p]) => `${r} ${p}\n`).join(''));
  chmodSync(join(dir, 'secrets'), 0o600);
  tokens.agent = await idp.token(emails.agent, ['agents']);
  tokens.dba = await idp.token(emails.dba, ['dba-oncall']);
  tokens.root = await idp.token(emails.root, ['gateway-admins']);
  [port1, port2] = [await freePort(), await freePort()];
  const peers = [`1=127.0.0.1:${port1}`, `2=127.0.0.1:${port2}`];
  [gw1, gw2] = await Promise.all([instance(1, port1, peers), instance(2, port2, peers)]);
});

after(async () => {
  for (const g of [gw1, gw2]) {
    if (!g) continue;
    g.kill('SIGINT');
    g.kill('SIGINT');
    await g.exited;
  }
  await withClient(env.pgPort, (c) => c.query('DROP SCHEMA IF EXISTS ins CASCADE'));
  rmSync(dir, { recursive: true, force: true });
});

test('a CancelRequest cancels the statement whichever instance reads it; a wrong secret cancels nothing', async () => {
  const gws = { 1: [gw1, port1], 2: [gw2, port2] };
  const before1 = await counter(gw1, 'pgwarden_cancels_to_peers_total');
  const before2 = await counter(gw2, 'pgwarden_cancels_to_peers_total');
  for (const owner of [1, 2]) {
    for (const reader of [1, 2]) {
      const c = await connect('agent', gws[owner][1]);
      try {
        assert.ok(c.processID > 0 && c.secretKey !== undefined, 'the gateway issued a key');
        const started = Date.now();
        const q = c.query('SELECT pg_sleep(20)').then(() => 'finished', (e) => e.code);
        await sleep(300);
        await sendCancel(gws[reader][1], c.processID, c.secretKey);
        assert.equal(await q, '57014', `key of instance ${owner}, cancel read by instance ${reader}`);
        assert.ok(Date.now() - started < 10000);
        // The session goes on.
        assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1);
        // A wrong secret, through the peer: nothing is canceled.
        const other = reader === 1 ? 2 : 1;
        const q2 = c.query('SELECT pg_sleep(1.5)').then(() => 'finished', (e) => e.code);
        await sleep(300);
        await sendCancel(gws[other][1], c.processID, c.secretKey ^ 0x5a5a);
        await sendCancel(gws[owner][1], c.processID, c.secretKey ^ 0x5a5a);
        assert.equal(await q2, 'finished');
      } finally {
        await c.end().catch(() => {});
      }
    }
  }
  // Each instance forwarded the two requests it read for the other's keys: one with the right
  // secret, one with a wrong one (the owner judges secrets).
  for (const [g, was] of [[gw1, before1], [gw2, before2]]) {
    let n = 0;
    for (let i = 0; i < 40 && (n = await counter(g, 'pgwarden_cancels_to_peers_total')) - was < 2; i++) await sleep(50);
    assert.equal(n - was, 2);
  }
});

test('a forwarded CancelRequest is never passed on again: peers that point at each other wrongly do not loop', async () => {
  // Instance 3 believes instance 4 listens on its own port (a copy-paste error): a key of
  // instance 4 goes there once, marked as forwarded, and stops.
  const port3 = await freePort();
  const gw3 = await instance(3, port3, [`4=127.0.0.1:${port3}`]);
  try {
    const pid = (4 << 26) | (0 << 18) | (1 << 1) | 1;  // instance 4, core 0, slot 0
    await sendCancel(port3, pid, 1234);
    await sleep(500);
    assert.equal(await counter(gw3, 'pgwarden_cancels_to_peers_total'), 1);
    await sleep(500);
    assert.equal(await counter(gw3, 'pgwarden_cancels_to_peers_total'), 1, 'no loop');
    // Keys of an instance nobody configured, and keys marked as forwarded, are ignored.
    await sendCancel(port3, (9 << 26) | (1 << 1) | 1, 1);
    await sendCancel(port3, (4 << 26) | (1 << 1), 1);
    await sleep(300);
    assert.equal(await counter(gw3, 'pgwarden_cancels_to_peers_total'), 1);
    // It still serves.
    const c = await connect('agent', port3);
    assert.equal((await c.query('SELECT 2 AS two')).rows[0].two, 2);
    await c.end();
  } finally {
    gw3.kill('SIGINT');
    await gw3.exited;
  }
});

test('a flood of cancel requests for a peer that never answers holds a bounded number of sockets', async () => {
  // "Instance 5" accepts connections and never closes them: each forward waits for its close
  // (up to --connect-timeout), so without a bound the flood would take every file descriptor.
  const held = [];
  let closing = false;
  const blackhole = net.createServer((s) => {
    s.on('error', () => {});
    if (closing) s.destroy(); else held.push(s);
  });
  await new Promise((r) => blackhole.listen(0, '127.0.0.1', r));
  const port6 = await freePort();
  const gw6 = await startGateway(['--listen', `127.0.0.1:${port6}`, '--threads', '1', '--upstream', `127.0.0.1:${env.pgPort}`,
    '--admin-listen', '127.0.0.1:0', ...scrape.flags, '--peer-id', '6', '--peer', `5=127.0.0.1:${blackhole.address().port}`,
    '--connect-timeout', '20']);
  try {
    const pid = (5 << 26) | (1 << 1) | 1;
    for (let sent = 0; sent < 1400; sent += 100) {
      await Promise.all(Array.from({ length: 100 }, (_, i) => sendCancel(port6, pid, sent + i)));
    }
    let dropped = 0;
    for (let i = 0; i < 100 && (dropped = await counter(gw6, 'pgwarden_cancels_dropped_total')) === 0; i++) await sleep(50);
    const forwarded = await counter(gw6, 'pgwarden_cancels_to_peers_total');
    assert.ok(dropped > 0, 'past the bound, cancels are dropped');
    assert.ok(held.length <= 1024, `${held.length} sockets reached the peer`);
    assert.equal(forwarded, 1400);
    // The gateway still serves.
    await withClient(port6, async (c) => assert.equal((await c.query('SELECT 3 AS three')).rows[0].three, 3));
  } finally {
    closing = true;
    for (const s of held) s.destroy();  // the forwards in flight end with their connections
    gw6.kill('SIGINT');
    await gw6.exited;
    blackhole.close();
  }
});

test('the CLI with several --admin URLs lists every instance, approves on the one that holds the ID, locks on all', async () => {
  await withClient(env.pgPort, (c) => c.query('CREATE TABLE ins.doomed (id int); ALTER TABLE ins.doomed OWNER TO ins_agent'));
  const agent = await connect('agent', port2);
  const idle = await connect('agent', port1);
  try {
    const drop = agent.query('DROP TABLE ins.doomed').then(() => 'dropped', (e) => e.code);
    let held;
    for (let i = 0; i < 100 && !held; i++) {
      held = (await adminCall(gw2, 'GET', '/api/v1/approvals', { token: tokens.dba })).json().find((a) => /doomed/.test(a.statement));
      if (!held) await sleep(50);
    }
    assert.ok(held, 'the DROP waits on instance 2');
    const inst2 = `127.0.0.1:${adminPort(gw2)}`;
    // The merged list: an INSTANCE column, and in JSON an "instance" field.
    const table = await tool(['approvals', 'list', ...admins()], tokens.dba);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^INSTANCE\s+ID\s+WAITS/);
    assert.match(table.stdout, new RegExp(`^${inst2.replace(/\./g, '\\.')}\\s+${held.id}\\s`, 'm'));
    const json = await tool(['approvals', 'list', '--json', ...admins()], tokens.dba);
    assert.equal(json.code, 0, json.stderr);
    const listed = JSON.parse(json.stdout).find((a) => a.id === held.id);
    assert.equal(listed.instance, inst2);
    assert.equal(listed.identity, emails.agent);
    // $PGWARDEN_ADMIN may list the instances too.
    const viaEnv = await tool(['sessions', '--live', '--json'], tokens.root,
      { PGWARDEN_ADMIN: `http://127.0.0.1:${adminPort(gw1)},http://127.0.0.1:${adminPort(gw2)}` });
    assert.equal(viaEnv.code, 0, viaEnv.stderr);
    const sessions = JSON.parse(viaEnv.stdout).filter((s) => s.identity === emails.agent);
    assert.deepEqual(sessions.map((s) => s.instance).sort(), [`127.0.0.1:${adminPort(gw1)}`, inst2].sort());
    // An instance that does not answer is named, the others still listed, and the exit code says so.
    const partial = await tool(['approvals', 'list', '--admin', 'http://127.0.0.1:1', ...admins()], tokens.dba);
    assert.equal(partial.code, 1);
    assert.match(partial.stderr, /http:\/\/127\.0\.0\.1:1: /);
    assert.match(partial.stdout, new RegExp(held.id));
    // Approve: instance 1 does not know the ID (404), instance 2 decides it.
    const approved = await tool(['approvals', 'approve', held.id, ...admins()], tokens.dba);
    assert.equal(approved.code, 0, approved.stderr);
    assert.match(approved.stdout, new RegExp(`^http://${inst2.replace(/\./g, '\\.')}: `));
    assert.equal(await drop, 'dropped');
    // An ID no instance has: every instance's 404 is shown, exit code 1.
    const unknown = await tool(['approvals', 'approve', '0123456789abcdef', ...admins()], tokens.dba);
    assert.equal(unknown.code, 1);
    assert.equal((unknown.stderr.match(/: 404 /g) || []).length, 2, unknown.stderr);
    // A lock holds on every instance; unlock lifts it on every instance.
    const locked = await tool(['lock', emails.dba, '--for', '10m', '--reason', 'drill', ...admins()], tokens.root);
    assert.equal(locked.code, 0, locked.stderr);
    for (const port of [port1, port2]) {
      await assert.rejects(connect('dba', port), (e) => e.code === '28000');
    }
    const locks = await tool(['locks', ...admins()], tokens.root);
    assert.equal((locks.stdout.match(/dora@example\.com/g) || []).length, 2, locks.stdout);
    assert.equal((await tool(['unlock', emails.dba, ...admins()], tokens.root)).code, 0);
    for (const port of [port1, port2]) await (await connect('dba', port)).end();
  } finally {
    await agent.end().catch(() => {});
    await idle.end().catch(() => {});
  }
});
