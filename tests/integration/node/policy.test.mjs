// Statement policy end to end: rules judged by PostgreSQL's own parser, enforced in the simple and
// extended protocol (pipelines behave as if the server refused the statement), decisions
// recorded, pgbench unaffected, and SIGHUP reloads under load.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, chmodSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import postgres from 'postgres';
import { env, withClient, startGateway, sleep, Wire, startupPacket, message, query, errorFields, makeIdp, adminCall, logMatch } from './lib.mjs';

let dir, gw, key, idp;
const policyFile = () => join(dir, 'policy.json');
const RULES = {
  admins: ['dba-oncall'],
  rules: [
    { name: 'guard', users: ['trusted'],
      deny: ['drop', 'truncate', 'delete_without_where', 'update_without_where', 'tautological_where',
        'copy_program', 'dangerous_function', 'dynamic_sql', 'write_in_cte', 'explain_analyze_write'],
      require_approval: ['alter'], forbidden_tables: ['public.policy_secret'] },
  ],
};
const client = (port = gw.port) => new pg.Client({ host: '127.0.0.1', port, user: 'trusted', database: 'postgres' });
const count = () => withClient(env.pgPort, async (c) => Number((await c.query('SELECT count(*) AS n FROM policy_t')).rows[0].n));
const tool = (...args) => new Promise((resolve) => execFile(env.bin, args, { maxBuffer: 64 << 20 },
  (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stdout, stderr })));

// Extended-protocol messages.
const cstr = (s) => Buffer.from(`${s}\0`);
const int16 = (n) => { const b = Buffer.alloc(2); b.writeInt16BE(n); return b; };
const int32 = (n) => { const b = Buffer.alloc(4); b.writeInt32BE(n); return b; };
const parse = (name, sql) => message('P', Buffer.concat([cstr(name), cstr(sql), int16(0)]));
const bind = (stmt) => message('B', Buffer.concat([cstr(''), cstr(stmt), int16(0), int16(0), int16(0)]));
const execute = () => message('E', Buffer.concat([cstr(''), int32(0)]));
const sync = () => message('S');
// SIGHUP, then wait until the gateway says the policy was reloaded (not a fixed sleep: a loaded
// machine may take longer).
async function reload() {
  const before = (gw.log.match(/SIGHUP: policy reloaded/g) || []).length;
  gw.kill('SIGHUP');
  for (let i = 0; i < 200 && (gw.log.match(/SIGHUP: policy reloaded/g) || []).length === before; i++) await sleep(50);
  assert.ok((gw.log.match(/SIGHUP: policy reloaded/g) || []).length > before, 'the policy was reloaded');
}

// The admin API, as `who` (a member of the policy's admins group) with an optional reason.
const admin = async (method, path, who = 'alice', body) =>
  adminCall(gw, method, path, { token: await idp.token(who, ['dba-oncall']), body });

async function session(port = gw.port) {
  const w = new Wire(port);
  await w.connected();
  w.write(startupPacket({ user: 'trusted', database: 'postgres' }));
  assert.equal((await w.next(['Z', 'E'])).type, 'Z');
  return w;
}
// Messages up to and including the next ReadyForQuery.
async function untilReady(w) {
  const out = [];
  for (;;) {
    const m = await w.next(['1', '2', 'C', 'E', 'Z', 'T', 'D', 'n', 't', 's', 'I']);
    out.push(m);
    if (m.type === 'Z') return out;
  }
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pgw-policy-'));
  key = join(dir, 'seal.key');
  writeFileSync(key, 'p'.repeat(40));
  chmodSync(key, 0o600);
  writeFileSync(policyFile(), JSON.stringify(RULES));
  await withClient(env.pgPort, async (c) => {
    await c.query('DROP TABLE IF EXISTS policy_t, policy_secret');
    await c.query('CREATE TABLE policy_t (id int PRIMARY KEY, note text)');
    await c.query("CREATE TABLE policy_secret (v text); INSERT INTO policy_secret VALUES ('s3cret')");
    await c.query('GRANT ALL ON policy_t, policy_secret TO trusted');
    await c.query('ALTER TABLE policy_t OWNER TO trusted'); // so an approved ALTER can run
  });
  idp = await makeIdp(dir);
  gw = await startGateway(['--upstream', `127.0.0.1:${env.pgPort}`, '--policy', policyFile(),
    '--record-dir', join(dir, 'rec'), '--record-key-file', key, '--admin-listen', '127.0.0.1:0',
    '--approval-timeout', '2', ...idp.flags]);
});

after(async () => {
  gw.kill('SIGINT');
  gw.kill('SIGINT');
  await gw.exited;
  rmSync(dir, { recursive: true, force: true });
});

test('psql: denied statements get 42501 naming rule and class, nothing runs, the session goes on', async () => {
  const r = await new Promise((resolve) => execFile('psql', ['-X', '-w', '-h', '127.0.0.1', '-p', String(gw.port), '-U', 'trusted', '-d', 'postgres',
    '-c', "INSERT INTO policy_t VALUES (1, 'keep')", '-c', 'DELETE FROM policy_t', '-c', 'BEGIN', '-c', 'DROP TABLE policy_t',
    '-c', "SELECT 'DROP TABLE policy_t' AS text", '-c', 'COMMIT', '-c', 'SELECT v FROM policy_secret',
    '-c', 'ALTER TABLE policy_t ADD COLUMN x int', '-c', 'SELECT count(*) FROM policy_t'],
  (err, stdout, stderr) => resolve({ stdout, stderr })));
  assert.match(r.stderr, /ERROR: {2}pgwarden: statement denied by policy rule "guard" \(class delete_without_where\)/);
  assert.match(r.stderr, /ERROR: {2}pgwarden: statement denied by policy rule "guard" \(class drop\)/);
  assert.match(r.stderr, /ERROR: {2}pgwarden: statement denied by policy rule "guard" \(table policy_secret\)/);
  // Held for approval (the admin endpoint is on); nobody decided within --approval-timeout.
  assert.match(r.stderr, /held for approval under policy rule "guard" \(class alter\) was not decided within 2 s/);
  assert.match(r.stdout, /DROP TABLE policy_t/); // a string is just a string
  assert.match(r.stdout, /COMMIT/); // the denied statement did not abort the transaction
  assert.equal(await count(), 1);
  await withClient(env.pgPort, (c) => c.query('DELETE FROM policy_t WHERE id = 1'));
});

test('EXPLAIN (ANALYZE 0) then (ANALYZE 1) of a DELETE: one shape, judged apart; the second is refused and nothing is deleted', async () => {
  // The policy's caches share a decision between texts that differ only in numbers, unless the
  // number decides: ANALYZE 0 runs nothing, ANALYZE 1 runs the DELETE (attacker review).
  await withClient(env.pgPort, (c) => c.query("INSERT INTO policy_t VALUES (7, 'keep')"));
  const c = client();
  await c.connect();
  try {
    const plan = await c.query('EXPLAIN (ANALYZE 0) DELETE FROM policy_t');
    assert.ok(plan.rows.length > 0);
    await assert.rejects(c.query('EXPLAIN (ANALYZE 1) DELETE FROM policy_t'),
      (e) => e.code === '42501' && /denied by policy rule "guard"/.test(e.message));
  } finally {
    await c.end();
  }
  assert.equal(await count(), 1);
  await withClient(env.pgPort, (c2) => c2.query('DELETE FROM policy_t WHERE id = 7'));
});

test('a text that does not parse (1.1.1) then its parseable twin (1): one shape, the twin is still judged', async () => {
  await withClient(env.pgPort, (c) => c.query("INSERT INTO policy_t VALUES (8, 'keep')"));
  const c = client();
  await c.connect();
  try {
    // The server refuses the first itself (a syntax error): nothing of it runs.
    await assert.rejects(c.query('DELETE FROM policy_t; SELECT 1.1.1'), (e) => e.code === '42601');
    await assert.rejects(c.query('DELETE FROM policy_t; SELECT 1'),
      (e) => e.code === '42501' && /class delete_without_where/.test(e.message));
  } finally {
    await c.end();
  }
  assert.equal(await count(), 1);
  await withClient(env.pgPort, (c2) => c2.query('DELETE FROM policy_t WHERE id = 8'));
});

test('extended protocol: a denied statement mid-pipeline rolls back the implicit transaction and skips the rest', async () => {
  const w = await session();
  w.write(Buffer.concat([
    parse('', "INSERT INTO policy_t VALUES (10, 'before')"), bind(''), execute(),
    parse('', 'DELETE FROM policy_t'), bind(''), execute(),
    parse('', "INSERT INTO policy_t VALUES (11, 'after')"), bind(''), execute(),
    sync()]));
  const got = await untilReady(w);
  assert.deepEqual(got.map((m) => m.type), ['1', '2', 'C', 'E', 'Z']);
  const err = errorFields(got[3].body);
  assert.equal(err.C, '42501');
  assert.match(err.M, /denied by policy rule "guard" \(class delete_without_where\)/);
  assert.equal(got[4].body.toString(), 'I');
  assert.equal(await count(), 0, 'the insert before the denied statement was rolled back');
  // The connection is usable: the next pipeline commits.
  w.write(Buffer.concat([parse('', "INSERT INTO policy_t VALUES (12, 'next')"), bind(''), execute(), sync()]));
  assert.deepEqual((await untilReady(w)).map((m) => m.type), ['1', '2', 'C', 'Z']);
  assert.equal(await count(), 1);
  // A refused named statement keeps its decision: binding it later is refused too.
  w.write(Buffer.concat([parse('wipe', 'DELETE FROM policy_t'), sync()]));
  const first = await untilReady(w);
  assert.deepEqual(first.map((m) => m.type), ['E', 'Z']);
  w.write(Buffer.concat([bind('wipe'), execute(), sync()]));
  const again = await untilReady(w);
  assert.deepEqual(again.map((m) => m.type), ['E', 'Z']);
  assert.equal(errorFields(again[0].body).C, '42501');
  assert.equal(await count(), 1);
  // Pipelined simple queries: the denied one is answered in its place.
  w.write(Buffer.concat([query('SELECT 1'), query('TRUNCATE policy_t'), query('SELECT 2')]));
  const a = await untilReady(w), b = await untilReady(w), c = await untilReady(w);
  assert.deepEqual([a, b, c].map((r) => r.map((m) => m.type).join('')), ['TDCZ', 'EZ', 'TDCZ']);
  assert.equal(errorFields(b[0].body).C, '42501');
  assert.equal(await count(), 1);
  w.end();
  await withClient(env.pgPort, (c2) => c2.query('DELETE FROM policy_t WHERE id = 12'));
});

test('node pg (extended) and postgres.js (pipelined): denied queries reject, the others succeed', async () => {
  const c = client();
  await c.connect();
  await assert.rejects(c.query({ text: 'DELETE FROM policy_t RETURNING $1::int', values: [1] }),
    (e) => e.code === '42501' && /delete_without_where/.test(e.message));
  assert.equal((await c.query({ text: 'SELECT $1::int AS v', values: [7] })).rows[0].v, 7);
  await assert.rejects(c.query({ text: 'UPDATE policy_t SET note = $1 WHERE 1 = 1', values: ['x'] }),
    (e) => e.code === '42501' && /tautological_where/.test(e.message));
  await c.end();
  const sql = postgres({ host: '127.0.0.1', port: gw.port, user: 'trusted', database: 'postgres', max: 1 });
  const results = await Promise.allSettled([
    sql`INSERT INTO policy_t VALUES (20, 'a')`,
    sql`DELETE FROM policy_t`,
    sql`SELECT count(*)::int AS n FROM policy_t`,
  ]);
  await sql.end();
  assert.equal(results[0].status, 'fulfilled');
  assert.equal(results[1].status, 'rejected');
  assert.equal(results[1].reason.code, '42501');
  assert.equal(results[2].value[0].n, 1);
  await withClient(env.pgPort, (c2) => c2.query('DELETE FROM policy_t WHERE id = 20'));
});

test('standard_conforming_strings off cannot hide a statement in a backslash-escaped literal', async () => {
  const c = client();
  await c.connect();
  // With the setting off the server ends the first literal later than the classifier would with
  // it on, so the DROP below is outside any literal for PostgreSQL: texts with a backslash are
  // judged under both readings, so the DROP is seen whichever the server uses.
  const evasion = "SELECT '\\' , $$ ' ; DROP TABLE policy_t; -- $$";
  await c.query('SET standard_conforming_strings = off');
  await assert.rejects(c.query(evasion), (e) => e.code === '42501' && /class drop/.test(e.message));
  assert.equal((await c.query("SELECT 'no backslash here' AS v")).rows[0].v, 'no backslash here');
  assert.equal((await c.query("SELECT 'a\\'' AS v")).rows[0].v, "a'"); // an escaped quote, read as the server reads it
  await c.query('SET standard_conforming_strings = on');
  assert.equal((await c.query("SELECT E'a\\\\b' AS v")).rows[0].v, 'a\\b');
  await assert.rejects(c.query(evasion), (e) => e.code === '42501'); // and with it on
  await c.end();
  assert.equal(await count(), 0); // policy_t still exists and is untouched
});

test('SET standard_conforming_strings = off pipelined with the evasion in one write: still refused', async () => {
  const w = await session();
  w.write(Buffer.concat([query('SET standard_conforming_strings = off'),
    query("SELECT '\\' , $$ ' ; DROP TABLE policy_t; -- $$"),
    parse('', "SELECT '\\' , $$ ' ; DROP TABLE policy_t; -- $$"), bind(''), execute(), sync(),
    query('SET standard_conforming_strings = on')]));
  const set = await untilReady(w);
  assert.equal(set.at(-2).type, 'C');
  const simple = await untilReady(w);
  assert.equal(simple[0].type, 'E');
  assert.equal(errorFields(simple[0].body).C, '42501');
  const extended = await untilReady(w);
  assert.equal(extended[0].type, 'E');
  assert.equal(errorFields(extended[0].body).C, '42501');
  await untilReady(w);
  w.end();
  assert.equal(await count(), 0);
});

test('SET client_encoding pipelined ahead of a text it would change: the text waits for it, then is refused', async () => {
  const w = await session();
  w.write(Buffer.concat([query("SET client_encoding = 'SJIS'"),
    message('Q', Buffer.concat([Buffer.from("SELECT E'"), Buffer.from([0x95, 0x5c]),
      Buffer.from("' ; DROP TABLE policy_t; --'\0")])),
    query("SET client_encoding = 'UTF8'")]));
  assert.equal((await untilReady(w)).at(-2).type, 'C');
  const refused = await untilReady(w);
  assert.equal(refused[0].type, 'E');
  assert.match(errorFields(refused[0].body).M, /client_encoding is SJIS/);
  await untilReady(w);
  // Unsynced: a SET ahead in the same pipeline cannot be answered before the text.
  w.write(Buffer.concat([parse('', "SET client_encoding = 'SJIS'"), bind(''), execute(),
    message('P', Buffer.concat([Buffer.from("\0SELECT E'"), Buffer.from([0x95, 0x5c]),
      Buffer.from("' ; DROP TABLE policy_t; --'\0"), int16(0)])), bind(''), execute(), sync()]));
  const batch = await untilReady(w);
  const err = batch.find((m) => m.type === 'E');
  assert.match(errorFields(err.body).M, /cannot be judged behind unsynced statements/);
  w.write(query("SET client_encoding = 'UTF8'"));
  await untilReady(w);
  w.end();
  assert.equal(await count(), 0);
});

test('a client encoding that can hide a backslash inside a character, and fast-path calls, are refused', async () => {
  const w = await session();
  w.write(query("SET client_encoding = 'SJIS'"));
  assert.equal((await untilReady(w)).at(-2).type, 'C');
  // In SJIS, 0x95 0x5c is one character; read as UTF-8 bytes, 0x5c escapes the closing quote.
  w.write(message('Q', Buffer.concat([Buffer.from("SELECT E'"), Buffer.from([0x95, 0x5c]),
    Buffer.from("' ; DROP TABLE policy_t; --'\0")])));
  const refused = await untilReady(w);
  assert.equal(refused[0].type, 'E');
  assert.match(errorFields(refused[0].body).M, /client_encoding is SJIS/);
  w.write(query("SET client_encoding = 'UTF8'"));
  await untilReady(w);
  // FunctionCall: pg_terminate_backend (OID 2096) by OID, bypassing any SQL text.
  w.write(message('F', Buffer.concat([int32(2096), int16(1), int16(0), int16(1), int32(4), int32(1), int16(0)])));
  const fn = await untilReady(w);
  assert.deepEqual(fn.map((m) => m.type), ['E', 'Z']);
  assert.match(errorFields(fn[0].body).M, /fast-path function calls are denied by policy rule "guard" \(function 2096/);
  w.write(query('SELECT 1'));
  assert.equal((await untilReady(w)).at(-1).type, 'Z');
  w.end();
  assert.equal(await count(), 0);
});

test('decisions are recorded with the rule that made them', async () => {
  await sleep(300);
  const out = await tool('export', '--record-dir', join(dir, 'rec'), '--format', 'jsonl');
  const events = out.stdout.trim().split('\n').map((l) => JSON.parse(l));
  const refused = events.filter((e) => e.type === 'refused');
  assert.ok(refused.some((e) => e.text === 'DELETE FROM policy_t' && e.decision === 'deny' && e.rule === 'guard' &&
    /delete_without_where/.test(e.classes)));
  const held = events.find((e) => e.type === 'query' && /ALTER TABLE policy_t ADD COLUMN x/.test(e.text));
  assert.equal(held.decision, 'hold');
  assert.ok(events.some((e) => e.type === 'approval' && e.session === held.session && e.decision === 'denied' &&
    /not decided within/.test(e.reason)));
  const allowed = events.find((e) => e.type === 'query' && e.text === "SELECT 'DROP TABLE policy_t' AS text");
  assert.equal(allowed.decision, 'allow');
  assert.equal(allowed.rule, 'guard');
  // Refused statements never reach the server: no outcome from PostgreSQL for them.
  assert.ok(!events.some((e) => e.type === 'outcome' && /pgwarden_refused_/.test(e.message ?? '')));
});

test('pgbench tpcb-like passes the policy (its UPDATEs carry WHERE), and SIGHUP reloads under load', async () => {
  const pgbenchEnv = { ...process.env, PGPASSWORD: env.password };
  execFileSync('pgbench', ['-i', '-s', '1', '-q', '-h', '127.0.0.1', '-p', String(env.pgPort), '-U', 'postgres', 'postgres'],
    { env: pgbenchEnv, stdio: 'ignore' });
  await withClient(env.pgPort, (c) => c.query('GRANT ALL ON pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history TO trusted'));
  const bench = spawn('pgbench', ['-n', '-h', '127.0.0.1', '-p', String(gw.port), '-U', 'trusted', '-c', '4', '-j', '2', '-T', '6',
    '-M', 'prepared', 'postgres'], { env: pgbenchEnv });
  let out = '';
  bench.stdout.on('data', (d) => { out += d; });
  bench.stderr.on('data', (d) => { out += d; });
  const done = new Promise((r) => bench.on('exit', (code) => r(code)));
  // Reload five times while it runs: valid and invalid files alternate.
  for (let i = 0; i < 5; i++) {
    await sleep(800);
    writeFileSync(policyFile(), i % 2 === 0 ? '{"rules": [{"name": "broken", "deny": ["nope"]}]}' : JSON.stringify(RULES));
    gw.kill('SIGHUP');
  }
  assert.equal(await done, 0, out);
  assert.match(out, /number of failed transactions: 0 /);
  await logMatch(gw, /SIGHUP: keeping the old policy: .*policy\.json: \$\.rules\[0\]\.deny\[0\]: unknown statement class "nope"/);
  await logMatch(gw, /SIGHUP: policy reloaded/);
  // A reloaded rule applies to sessions that were already open.
  const c = client();
  await c.connect();
  await c.query('SELECT 1');
  writeFileSync(policyFile(), JSON.stringify({ rules: [{ name: 'locked', users: ['trusted'], read_only: true }] }));
  await reload();
  await assert.rejects(c.query("INSERT INTO policy_t VALUES (30, 'x')"), (e) => e.code === '42501' && /rule "locked"/.test(e.message));
  await c.end();
  writeFileSync(policyFile(), JSON.stringify(RULES));
  await reload();
});

test('admin API: health, readiness, metrics, and POST /api/v1/reload with the same validation as SIGHUP', async () => {
  assert.equal((await adminCall(gw, 'GET', '/healthz')).text, 'ok\n');
  assert.equal((await admin('GET', '/readyz')).status, 200);
  const metrics = (await admin('GET', '/metrics')).text;
  assert.match(metrics, /# TYPE pgwarden_statements_refused_policy_total counter/);
  const refused = [...metrics.matchAll(/^pgwarden_statements_refused_policy_total\{core="\d+"\} (\d+)$/gm)]
    .reduce((a, m) => a + Number(m[1]), 0);
  assert.ok(refused >= 5, `refusals counted: ${refused}`);
  assert.match(metrics, /^pgwarden_recording_failed\{core="0"\} 0$/m);
  assert.match(metrics, /^pgwarden_policy_version \d+$/m);
  assert.equal((await admin('GET', '/nope')).status, 404);
  assert.equal((await admin('GET', '/api/v1/reload')).status, 404);
  assert.equal((await adminCall(gw, 'POST', '/api/v1/reload')).status, 401); // no token
  assert.equal((await adminCall(gw, 'GET', '/metrics')).status, 401);
  // A valid token of someone outside the admins group may not reload.
  assert.equal((await adminCall(gw, 'POST', '/api/v1/reload', { token: await idp.token('mallory', ['analysts']) })).status, 403);
  writeFileSync(policyFile(), '{"rules": [{"name": "x", "read_only": "sometimes"}]}');
  const bad = await admin('POST', '/api/v1/reload');
  assert.equal(bad.status, 422);
  assert.match(bad.text, /keeping the old policy: .*policy\.json: \$\.rules\[0\]\.read_only: must be true or false/);
  writeFileSync(policyFile(), JSON.stringify({ admins: ['dba-oncall'], rules: [{ name: 'via-admin', users: ['trusted'], deny: ['select'] }] }));
  assert.equal((await admin('POST', '/api/v1/reload')).status, 200);
  const c = client();
  await c.connect();
  await assert.rejects(c.query('SELECT 1'), (e) => e.code === '42501' && /rule "via-admin" \(class select\)/.test(e.message));
  await c.end();
  writeFileSync(policyFile(), JSON.stringify(RULES));
  assert.equal((await admin('POST', '/api/v1/reload')).status, 200);
  // Bearer tokens travel on it: beyond loopback only with TLS.
  const exposed = await new Promise((resolve) => execFile(env.bin, ['--upstream', `127.0.0.1:${env.pgPort}`, '--listen', '127.0.0.1:0',
    '--admin-listen', '0.0.0.0:0'], (err, _o, stderr) => resolve({ code: err ? err.code : 0, stderr })));
  assert.equal(exposed.code, 1);
  assert.match(exposed.stderr, /--admin-listen must be a loopback HOST:PORT unless --admin-tls-cert/);
});

test('require_approval: the statement waits until someone approves or denies it on the admin endpoint', async () => {
  const pendingList = async () => {
    for (let i = 0; i < 50; i++) {
      const list = JSON.parse((await admin('GET', '/api/v1/approvals')).text);
      if (list.length > 0) return list;
      await sleep(50);
    }
    return [];
  };
  const hasColumn = (col) => withClient(env.pgPort, async (c) => (await c.query(
    "SELECT count(*)::int AS n FROM information_schema.columns WHERE table_name = 'policy_t' AND column_name = $1", [col])).rows[0].n === 1);
  const c = client();
  await c.connect();
  const approved = c.query('ALTER TABLE policy_t ADD COLUMN approved_col int');
  const [first] = await pendingList();
  assert.equal(first.statement, 'ALTER TABLE policy_t ADD COLUMN approved_col int');
  assert.equal(first.identity, 'trusted');
  assert.equal(first.rule, 'guard');
  assert.equal(await hasColumn('approved_col'), false, 'nothing ran while held');
  assert.equal((await admin('POST', `/api/v1/approvals/${first.id}/approve`, 'alice')).status, 200);
  await approved;
  assert.equal(await hasColumn('approved_col'), true);
  // The rejection is awaited from the start: the refusal can arrive while the deny request is
  // still being answered, and a rejection with no handler yet fails the whole run.
  const denied = assert.rejects(c.query('ALTER TABLE policy_t ADD COLUMN denied_col int'),
    (e) => e.code === '42501' && /held for approval under policy rule "guard" \(class alter\) was denied by bob: not during the freeze$/.test(e.message));
  const [second] = await pendingList();
  assert.equal((await admin('POST', `/api/v1/approvals/${second.id}/deny`, 'bob', { reason: 'not during\nthe freeze' })).status, 200);
  await denied;
  assert.equal(await hasColumn('denied_col'), false);
  assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1); // the session goes on
  await c.end();
  assert.equal((await admin('POST', `/api/v1/approvals/${second.id}/approve`)).status, 404); // already decided
  // Extended protocol: a held Parse; denying it fails the pipeline as if the server had.
  const w = await session();
  w.write(Buffer.concat([parse('', 'ALTER TABLE policy_t ADD COLUMN piped_col int'), bind(''), execute(), sync()]));
  const [third] = await pendingList();
  assert.equal((await admin('POST', `/api/v1/approvals/${third.id}/deny`, 'carol')).status, 200);
  const got = await untilReady(w);
  assert.deepEqual(got.map((m) => m.type), ['E', 'Z']);
  assert.match(errorFields(got[0].body).M, /was denied by carol/);
  w.write(Buffer.concat([parse('', 'ALTER TABLE policy_t ADD COLUMN piped_col int'), bind(''), execute(), sync()]));
  const [fourth] = await pendingList();
  assert.equal((await admin('POST', `/api/v1/approvals/${fourth.id}/approve`, 'dave')).status, 200);
  assert.deepEqual((await untilReady(w)).map((m) => m.type), ['1', '2', 'C', 'Z']);
  w.end();
  assert.equal(await hasColumn('piped_col'), true);
  // The decisions, approvers and waits are recorded.
  await sleep(300);
  const events = (await tool('export', '--record-dir', join(dir, 'rec'), '--format', 'jsonl')).stdout.trim().split('\n').map((l) => JSON.parse(l));
  const approvals = events.filter((e) => e.type === 'approval');
  for (const [who, decision] of [['alice', 'approved'], ['bob: not during the freeze', 'denied'], ['carol', 'denied'], ['dave', 'approved']]) {
    assert.ok(approvals.some((e) => e.decision === decision && e.reason === `${decision} by ${who}` && e.duration_us > 0), who);
  }
  await withClient(env.pgPort, (d) => d.query('ALTER TABLE policy_t DROP COLUMN approved_col, DROP COLUMN piped_col'));
});

// Metric families parsed from the Prometheus text: name{labels} -> value.
function samples(text, name) {
  const out = [];
  const re = new RegExp(`^${name}(?:\\{([^}]*)\\})? (\\S+)$`, 'gm');
  for (const m of text.matchAll(re)) out.push({ labels: m[1] || '', value: Number(m[2]) });
  return out;
}

test('metrics: latency histograms, judgements by decision and class, approvals and the upstream', async () => {
  const c = client();
  await c.connect();
  for (let i = 0; i < 20; i++) await c.query('SELECT $1::int AS n', [i]);
  await assert.rejects(c.query('DELETE FROM policy_t'), (e) => e.code === '42501');
  await c.end();
  const text = (await admin('GET', '/metrics')).text;
  for (const h of ['pgwarden_statement_gateway_seconds', 'pgwarden_upstream_seconds', 'pgwarden_record_flush_seconds',
    'pgwarden_approval_wait_seconds']) {
    assert.match(text, new RegExp(`^# TYPE ${h} histogram$`, 'm'));
    const buckets = samples(text, `${h}_bucket`).filter((s) => s.labels.startsWith('core="0"'));
    assert.ok(buckets.length > 10, `${h} has its buckets`);
    for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i].value >= buckets[i - 1].value, `${h}: cumulative`);
    const [count] = samples(text, `${h}_count`).filter((s) => s.labels === 'core="0"');
    assert.equal(buckets.at(-1).value, count.value, `${h}: +Inf equals the count`);
    assert.match(buckets.at(-1).labels, /le="\+Inf"/);
  }
  const count = (h) => samples(text, `${h}_count`).reduce((a, s) => a + s.value, 0);
  const sum = (h) => samples(text, `${h}_sum`).reduce((a, s) => a + s.value, 0);
  assert.ok(count('pgwarden_statement_gateway_seconds') >= 20, 'every statement sent is observed');
  assert.ok(count('pgwarden_upstream_seconds') >= 20 && sum('pgwarden_upstream_seconds') > 0);
  // The statements were recorded (batch durability): the writes were timed.
  assert.ok(count('pgwarden_record_flush_seconds') >= 1);
  // The require_approval test before this one held statements and decided them.
  assert.ok(count('pgwarden_approval_wait_seconds') >= 1, 'approval waits observed');
  const decision = (d) => samples(text, 'pgwarden_decisions_total').filter((s) => s.labels.includes(`decision="${d}"`))
    .reduce((a, s) => a + s.value, 0);
  assert.ok(decision('allow') >= 20);
  assert.ok(decision('deny') >= 1);
  assert.ok(decision('hold') >= 1 && decision('approved') >= 1);
  const klass = (k) => samples(text, 'pgwarden_statements_by_class_total').filter((s) => s.labels.includes(`class="${k}"`))
    .reduce((a, s) => a + s.value, 0);
  assert.ok(klass('select') >= 20);
  assert.ok(klass('delete_without_where') >= 1);
  assert.equal(samples(text, 'pgwarden_approvals_pending')[0].value, 0);
  assert.equal(samples(text, 'pgwarden_approval_oldest_wait_seconds')[0].value, 0);
  assert.equal(samples(text, 'pgwarden_upstream_up').find((s) => s.labels === 'core="0"').value, 1);
  assert.ok(samples(text, 'pgwarden_masked_values_total').some((s) => s.labels.includes('detector="email"')));
});
