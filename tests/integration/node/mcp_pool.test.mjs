// The MCP endpoint's connection pool: tool calls of different callers mapped to the same role
// share PostgreSQL connections; a connection passes from one caller to the next with a one-time
// login of the next, a new recorded session, every stage afresh, and DISCARD ALL upstream, so that
// nothing of one caller's session (settings, temporary tables, advisory locks, rules, grants)
// reaches the next, and application_name and the identity setting always name the caller.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync, chmodSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { env, withClient, startGateway, sleep, makeIdp, adminCall } from './lib.mjs';

const SECRET = { pool_writer: 'pool-Writer-Secret-1', pool_reader: 'pool-Reader-Secret-2', pool_sjis: 'pool-Sjis-Secret-3' };
let dir, gw, idp, port, url;

const POLICY = {
  admins: ['dba-oncall'],
  may_act: [{ actor: 'agent-7', for_groups: ['writers'], actor_groups: ['ai-agents'] }],
  role_mappings: [
    { group: 'writers', role: 'pool_writer', database: 'postgres' },
    { group: 'ops', role: 'pool_writer', database: 'postgres' },
    { group: 'analysts', role: 'pool_reader', database: 'postgres' },
    { group: 'dba-oncall', role: 'pool_writer', database: 'postgres' },
    { group: 'jp', role: 'pool_sjis', database: 'postgres' },
    { group: 'latin', role: 'pool_reader', database: 'pool_latin1' },
  ],
  rules: [
    { name: 'agents', actor_groups: ['ai-agents'], deny: ['drop', 'truncate', 'ddl'] },
    { name: 'writers', groups: ['writers'] },
    { name: 'ops', groups: ['ops'], read_only: true },
    { name: 'analysts', groups: ['analysts'], read_only: true },
    { name: 'dba', groups: ['dba-oncall'] },
    { name: 'jp', groups: ['jp'], read_only: true },
    { name: 'latin', groups: ['latin'], read_only: true },
  ],
  masking: [{ name: 'ops', groups: ['ops'], detectors: { email: 'redact' } }],
};

const freePort = () => new Promise((resolve) => {
  const s = net.createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
});
const mcpToken = (email, groups, opts = {}) => idp.token(email, groups, { aud: url, ...opts });
async function mcp(email, groups, opts) {
  const client = new Client({ name: `client-of-${email.split('@')[0]}`, version: '2.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(url),
    { requestInit: { headers: { Authorization: `Bearer ${await mcpToken(email, groups, opts)}` } } }));
  return client;
}
const sql = async (client, text) => {
  const r = await client.callTool({ name: 'query', arguments: { sql: text } });
  return r;
};
const one = async (client, text) => {
  const r = await sql(client, text);
  assert.equal(r.isError, false, `${text}: ${JSON.stringify(r.structuredContent ?? r.content)}`);
  return r.structuredContent.rows[0];
};
const exported = () => new Promise((resolve, reject) => execFile(env.bin, ['export', '--record-dir', join(dir, 'rec'), '--format', 'jsonl'],
  { maxBuffer: 64 << 20 }, (err, stdout) => (err ? reject(err) : resolve(stdout.trim().split('\n').map((l) => JSON.parse(l))))));
const backends = (role) => withClient(env.pgPort, async (c) =>
  Number((await c.query('SELECT count(*) AS n FROM pg_stat_activity WHERE usename = $1', [role])).rows[0].n));
// (Written so that no e-mail detector masks them: '@' becomes ' at '.)
const WHO = "SELECT pg_backend_pid() AS pid, replace(current_setting('pgwarden.identity', true), '@', ' at ') AS who, " +
  "replace(current_setting('application_name'), '@', ' at ') AS app";

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pgw-mcp-pool-'));
  port = await freePort();
  url = `http://127.0.0.1:${port}/mcp`;
  idp = await makeIdp(dir, { audience: 'pgwarden-admin' });
  await withClient(env.pgPort, async (c) => {
    for (const [role, pw] of Object.entries(SECRET)) {
      await c.query(`DROP ROLE IF EXISTS ${role}`);
      await c.query(`CREATE ROLE ${role} LOGIN PASSWORD '${pw}'`);
    }
    await c.query('DROP SCHEMA IF EXISTS poolt CASCADE');
    await c.query('CREATE SCHEMA poolt AUTHORIZATION pool_writer');
    await c.query('CREATE TABLE poolt.people (id int, email text)');
    await c.query("INSERT INTO poolt.people VALUES (1, 'alice@example.org')");
    await c.query('ALTER TABLE poolt.people OWNER TO pool_writer');
    // A role whose sessions speak SJIS (where a character's second byte can be a backslash) and
    // read \' as a quote: what a caller's identity carries must not become SQL there.
    await c.query("ALTER ROLE pool_sjis SET client_encoding = 'SJIS'");
    await c.query('ALTER ROLE pool_sjis SET backslash_quote = on');
    await c.query('GRANT CREATE, USAGE ON SCHEMA poolt TO pool_sjis');
    // A database in an encoding other than UTF-8: identities reach it as the same bytes over MCP
    // as over the wire (startup parameters are not converted).
    await c.query('DROP DATABASE IF EXISTS pool_latin1');
    await c.query("CREATE DATABASE pool_latin1 TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'");
  });
  writeFileSync(join(dir, 'policy.json'), JSON.stringify(POLICY));
  writeFileSync(join(dir, 'secrets'), Object.entries(SECRET).map(([r, p]) => `${r} ${p}\n`).join(''));
  chmodSync(join(dir, 'secrets'), 0o600);
  writeFileSync(join(dir, 'seal.key'), 'p'.repeat(40));
  chmodSync(join(dir, 'seal.key'), 0o600);
  gw = await startGateway(['--upstream', `127.0.0.1:${env.pgPort}`, '--threads', '2', '--policy', join(dir, 'policy.json'),
    '--upstream-secrets', join(dir, 'secrets'), '--jwks-file', idp.file, '--oidc-issuer', idp.issuer,
    '--oidc-audience', 'pgwarden-sql', '--admin-audience', 'pgwarden-admin', '--allow-plaintext-auth',
    '--admin-listen', `127.0.0.1:${port}`, '--mcp-url', url, '--mcp-call-timeout', '5', '--mcp-pool', '2', '--mcp-pool-idle', '6',
    '--identity-guc', 'pgwarden.identity',
    '--record-dir', join(dir, 'rec'), '--record-key-file', join(dir, 'seal.key')]);
});

after(async () => {
  gw.kill('SIGINT');
  gw.kill('SIGINT');
  await gw.exited;
  await withClient(env.pgPort, async (c) => {
    await c.query('DROP SCHEMA IF EXISTS poolt CASCADE');
    await c.query('DROP DATABASE IF EXISTS pool_latin1 WITH (FORCE)');
  });
  rmSync(dir, { recursive: true, force: true });
});

test('callers of one role share a PostgreSQL connection; each call runs as its own caller, on record as such', async () => {
  const wes = await mcp('wes@example.com', ['writers']);
  const olga = await mcp('olga@example.com', ['ops']);
  const agent = await mcp('wes@example.com', ['writers'], { claims: { act: { sub: 'agent-7' } } });
  const a = await one(wes, WHO);
  const b = await one(olga, WHO);
  const c = await one(agent, WHO);
  const d = await one(wes, WHO);
  // One connection, passed from caller to caller (the calls came one after another).
  assert.equal(b.pid, a.pid);
  assert.equal(c.pid, a.pid);
  assert.equal(d.pid, a.pid);
  assert.equal(await backends('pool_writer'), 1);
  // PostgreSQL's side names the caller of each call.
  assert.equal(a.who, 'wes at example.com');
  assert.equal(b.who, 'olga at example.com');
  assert.equal(c.who, 'wes at example.com');
  assert.match(a.app, /^wes at example\.com via pgwarden/);
  assert.match(b.app, /^olga at example\.com via pgwarden/);
  // Each caller's own rule and profile: olga's rule is read-only and masks e-mail; wes's is not;
  // the agent acting for wes gets the agents' rule (no DDL), not wes's.
  const masked = await one(olga, 'SELECT email FROM poolt.people');
  assert.notEqual(masked.email, 'alice@example.org');
  assert.equal((await sql(olga, "INSERT INTO poolt.people VALUES (2, 'x@example.org')")).isError, true);
  assert.equal((await sql(agent, 'CREATE TABLE poolt.agent_made (x int)')).isError, true);
  assert.equal((await one(wes, 'SELECT email FROM poolt.people')).email, 'alice@example.org');
  assert.equal((await sql(wes, 'CREATE TABLE poolt.wes_made (x int)')).isError, false);
  for (const cl of [wes, olga, agent]) await cl.close();
  await sleep(300);
  // The recording: every call's statement in a session of its own caller's, and each passing on
  // record (the previous session ends, the next starts with the caller's identity and agents).
  const recs = await exported();
  const starts = new Map(recs.filter((r) => r.type === 'session_start').map((r) => [r.session, r]));
  const calls = recs.filter((r) => r.type === 'parse' && r.tool === 'query' && /pg_backend_pid/.test(r.text));
  assert.equal(calls.length, 4);
  const by = calls.map((r) => [starts.get(r.session).identity, (starts.get(r.session).actors || []).join(',')]);
  assert.deepEqual(by, [['wes@example.com', ''], ['olga@example.com', ''], ['wes@example.com', 'agent-7'], ['wes@example.com', '']]);
  for (const r of calls) {
    assert.equal(starts.get(r.session).auth_method, 'mcp');
    assert.match(r.mcp_client, /^client-of-(wes|olga)\/2\.0\.0$/);
  }
  const passed = recs.filter((r) => r.type === 'session_end' && /passed to the MCP endpoint's next caller/.test(r.reason || ''));
  assert.ok(passed.length >= 3, `sessions ended by a handover: ${passed.length}`);
});

test('nothing of one caller\'s session reaches the next: settings, temporary tables, advisory locks, prepared statements', async () => {
  const wes = await mcp('wes@example.com', ['writers']);
  const dana = await mcp('dana@example.com', ['dba-oncall']);
  const first = await one(wes, 'SELECT pg_backend_pid() AS pid');
  assert.equal((await sql(wes, 'SET search_path TO poolt')).isError, false);
  assert.equal((await one(wes, "SELECT current_setting('search_path') AS sp")).sp, 'poolt');
  assert.equal((await sql(wes, "SET work_mem = '7MB'")).isError, false);
  assert.equal((await sql(wes, 'CREATE TEMP TABLE wes_scratch AS SELECT 1 AS x')).isError, false);
  assert.equal((await sql(wes, 'SELECT pg_advisory_lock(4242)')).isError, false);
  assert.equal((await sql(wes, 'PREPARE wes_stmt AS SELECT 1')).isError, false);
  // DISCARD ALL keeps random()'s seed: pgwarden seeds it afresh for the next caller.
  assert.equal((await sql(wes, 'SELECT setseed(0.5)')).isError, false);
  const seeded = await withClient(env.pgPort, async (c) => { await c.query('SELECT setseed(0.5)'); return (await c.query('SELECT random() AS r')).rows[0].r; });
  const next = await one(dana, "SELECT pg_backend_pid() AS pid, current_setting('search_path') AS sp, current_setting('work_mem') AS wm, " +
    "(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS locks, " +
    "(SELECT count(*) FROM pg_prepared_statements) AS prepared, (SELECT count(*) FROM pg_class WHERE relname = 'wes_scratch') AS temps, random() AS r");
  assert.equal(next.pid, first.pid, 'the same connection passed to dana');
  assert.equal(next.sp, '"$user", public');
  assert.notEqual(next.wm, '7MB');
  assert.equal(next.locks, '0');
  assert.equal(next.prepared, '0');
  assert.equal(next.temps, '0');
  assert.notEqual(Number(next.r), seeded, 'the random() sequence the previous caller fixed');
  // RESET brings back no other caller's name either (the connection's startup values name none).
  assert.equal((await sql(dana, 'RESET application_name')).isError, false);
  const reset = await one(dana, "SELECT current_setting('application_name') AS app");
  assert.doesNotMatch(reset.app, /wes/);
  await wes.close();
  await dana.close();
});

test('other roles get other connections; concurrent calls take more, and the pool keeps at most --mcp-pool idle', async () => {
  const ann = await mcp('ann@example.com', ['analysts']);
  const wes = await mcp('wes@example.com', ['writers']);
  const a = await one(ann, WHO);
  const w = await one(wes, WHO);
  assert.notEqual(a.pid, w.pid);
  // Four calls at once (four MCP sessions of four callers): four connections; then two stay.
  const clients = await Promise.all(['p1', 'p2', 'p3', 'p4'].map((n) => mcp(`${n}@example.com`, ['writers'])));
  const pids = await Promise.all(clients.map((cl) => one(cl, 'SELECT pg_backend_pid() AS pid, pg_sleep(0.5) AS s')));
  assert.equal(new Set(pids.map((p) => p.pid)).size, 4);
  await sleep(500);
  assert.ok(await backends('pool_writer') <= 2, `idle writer connections: ${await backends('pool_writer')}`);
  for (const cl of [ann, wes, ...clients]) await cl.close();
});

test('a locked caller gets no pooled connection; the next caller is unaffected', async () => {
  const wes = await mcp('wes@example.com', ['writers']);
  const dana = await mcp('dana@example.com', ['dba-oncall']);
  const before = await one(wes, WHO);
  const dba = await idp.token('dana@example.com', ['dba-oncall']);
  const lock = await adminCall(gw, 'POST', '/api/v1/locks', { token: dba, body: { name: 'olga@example.com', seconds: 60 } });
  assert.equal(lock.status, 201, lock.text);
  const olga = await mcp('olga@example.com', ['ops']);
  const refused = await sql(olga, WHO);
  assert.equal(refused.isError, true);
  assert.match(refused.content[0].text, /locked/);
  // The connection olga's handover broke is gone; dana's call runs on another, as dana.
  const after = await one(dana, WHO);
  assert.equal(after.who, 'dana at example.com');
  assert.equal((await adminCall(gw, 'DELETE', '/api/v1/locks/olga@example.com', { token: dba })).status, 200);
  assert.ok(before.pid);
  for (const cl of [wes, dana, olga]) await cl.close();
});

test('a wire client cannot use the handover: its session is not one of the endpoint\'s', async () => {
  const token = await idp.token('wes@example.com', ['writers'], { aud: 'pgwarden-sql' });
  const c = new pg.Client({ host: '127.0.0.1', port: gw.port, user: 'wes@example.com', password: token, database: 'postgres' });
  await c.connect();
  await assert.rejects(c.query("SET pgwarden.token = 'pgwarden-mcp-handover.abc.def'"), (e) => e.code === '28000');
  assert.equal((await c.query('SELECT current_user AS u')).rows[0].u, 'pool_writer');
  await c.end();
  // Nor can anyone log in with a made-up internal login.
  const forged = new pg.Client({ host: '127.0.0.1', port: gw.port, user: 'pgwarden-mcp:abc', password: 'def', database: 'postgres' });
  await assert.rejects(forged.connect(), (e) => e.code === '28000' || e.code === '28P01');
});

test('an identity is never SQL: a quote after an SJIS lead byte in it changes nothing upstream', async () => {
  const identity = "\u0555\\';CREATE TABLE poolt.pwned AS SELECT 1 x;--@example.com";
  const token = await idp.token(identity, ['jp'], { aud: url });
  const client = new Client({ name: 'sjis', version: '1' });
  await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { Authorization: `Bearer ${token}` } } }));
  const r = await sql(client, 'SELECT 1 AS one');
  assert.equal(r.isError, false, JSON.stringify(r.content));
  // And once more through a handover from another caller of the same role.
  const other = await mcp('kenji@example.com', ['jp']);
  assert.equal((await sql(other, 'SELECT 2 AS two')).isError, false);
  assert.equal((await sql(client, 'SELECT 3 AS three')).isError, false);
  const pwned = await withClient(env.pgPort, async (c) => (await c.query("SELECT to_regclass('poolt.pwned') AS t")).rows[0].t);
  assert.equal(pwned, null, 'a statement ran from within an identity');
  await client.close();
  await other.close();
});

test('idle pooled connections close after --mcp-pool-idle, requests or not; a canceled call\'s connection is not lent again', async () => {
  const wes = await mcp('wes@example.com', ['writers']);
  const first = await one(wes, 'SELECT pg_backend_pid() AS pid');
  const slow = await sql(wes, 'SELECT pg_sleep(30)');
  assert.equal(slow.structuredContent.sqlstate, '57014');
  const next = await one(wes, 'SELECT pg_backend_pid() AS pid, pg_advisory_lock(777) AS l');
  assert.notEqual(next.pid, first.pid, 'the connection a cancel was sent on');
  await wes.close();
  // Nobody calls: after --mcp-pool-idle (6 s) the connection closes, and its session's lock with it.
  const alive = (pid) => withClient(env.pgPort, async (c) => Number((await c.query('SELECT count(*) AS n FROM pg_stat_activity WHERE pid = $1', [pid])).rows[0].n));
  assert.equal(await alive(Number(next.pid)), 1);
  await sleep(8500);
  assert.equal(await alive(Number(next.pid)), 0);
});

test('in a LATIN1 database an identity is the same over MCP as over the wire, and no identity is locked out', async () => {
  const H = "SELECT md5(current_setting('pgwarden.identity', true)) AS h";
  for (const identity of ['josé@example.com', '张伟@example.com', 'josÃ©@example.com']) {
    const wire = new pg.Client({ host: '127.0.0.1', port: gw.port, user: identity, database: 'pool_latin1',
      password: await idp.token(identity, ['latin'], { aud: 'pgwarden-sql' }) });
    await wire.connect();
    const overWire = (await wire.query(H)).rows[0].h;
    await wire.end();
    const client = await mcp(identity, ['latin']);
    const overMcp = await one(client, H);
    assert.equal(overMcp.h, overWire, `${identity}: the identity setting differs between MCP and the wire`);
    await client.close();
  }
  // Two different identities never read as the same one.
  const hashes = [];
  for (const identity of ['josé@example.com', 'josÃ©@example.com']) {
    const client = await mcp(identity, ['latin']);
    hashes.push((await one(client, H)).h);
    await client.close();
  }
  assert.notEqual(hashes[0], hashes[1]);
});
