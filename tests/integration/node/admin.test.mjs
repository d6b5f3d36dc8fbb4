// The admin API end to end: held statements decided by people the policy names, proven by their
// OIDC tokens (four eyes, two-approver rules), through the `pgwarden approvals` CLI while psql
// waits; tokens, Host and Origin checked; and a listener that slow or oversized requests cannot
// tie up. SQL callers log in with gateway authentication (tokens from the same local IdP).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import net from 'node:net';
import https from 'node:https';
import http from 'node:http';
import { createHmac } from 'node:crypto';
import { mkdtempSync, writeFileSync, chmodSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { env, withClient, startGateway, sleep, makeIdp, adminCall, adminPort, makeCerts, rssKiB, logMatch } from './lib.mjs';

const SECRET = { adm_agent: 'agent-Upstream-Secret-1', adm_dba: 'dba-Upstream-Secret-2', adm_pay: 'pay-Upstream-Secret-3' };
let dir, gw, idp;
const tokens = {};
const emails = {};

const POLICY = {
  admins: ['gateway-admins'],
  role_mappings: [
    { group: 'agents', role: 'adm_agent', database: 'postgres' },
    { group: 'dba-oncall', role: 'adm_dba', database: 'postgres' },
    { group: 'payments', role: 'adm_pay', database: 'postgres' },
    { group: 'support', role: 'adm_agent', database: 'postgres' },
  ],
  rules: [
    { name: 'agents-hold', groups: ['agents'], require_approval: ['drop'], approvers: ['dba-oncall'] },
    { name: 'dba-hold', groups: ['dba-oncall'], require_approval: ['drop'], approvers: ['dba-oncall'] },
    { name: 'two-keys', groups: ['payments'], require_approval: ['truncate'], approvers: ['dba-oncall', 'security'],
      approvals_required: 2 },
    { name: 'jit', groups: ['support'], require_approval: ['delete', 'insert'], approvers: ['dba-oncall'], grant_seconds: 60 },
  ],
  masking: [{ name: 'support-view', groups: ['support'], detectors: { card_number: 'redact', email: 'redact' } }],
};

const tool = (args, extraEnv = {}) => new Promise((resolve) => execFile(env.bin, args,
  { env: { ...process.env, ...extraEnv } }, (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stdout, stderr })));
// An admin command of the pgwarden CLI as `who` (token in PGWARDEN_TOKEN); `cli` for approvals.
const cmd = (who, ...args) => tool([...args, '--admin', `http://127.0.0.1:${adminPort(gw)}`],
  { PGWARDEN_TOKEN: tokens[who] });
const cli = (who, ...args) => cmd(who, 'approvals', ...args);
const psql = (who, sql) => new Promise((resolve) => execFile('psql', ['-X', '-w', '-h', '127.0.0.1', '-p', String(gw.port),
  '-U', emails[who], '-d', 'postgres', '-c', sql], { env: { ...process.env, PGPASSWORD: tokens[who] } },
(err, stdout, stderr) => resolve({ code: err ? err.code : 0, stdout, stderr })));
const api = (who, method, path, body) => adminCall(gw, method, path, { token: tokens[who], body });
const tableExists = (name) => withClient(env.pgPort, async (c) =>
  (await c.query('SELECT to_regclass($1) IS NOT NULL AS e', [name])).rows[0].e);

// The pending approvals `who` may decide, once at least `n` are there.
async function pending(who, n = 1, match = () => true) {
  for (let i = 0; i < 100; i++) {
    const list = (await api(who, 'GET', '/api/v1/approvals')).json().filter(match);
    if (list.length >= n) return list;
    await sleep(50);
  }
  throw new Error(`fewer than ${n} pending approvals`);
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pgw-admin-'));
  idp = await makeIdp(dir, { audience: 'pgwarden-it' });
  await withClient(env.pgPort, async (c) => {
    for (const [role, pw] of Object.entries(SECRET)) {
      await c.query(`DROP ROLE IF EXISTS ${role}`);
      await c.query(`CREATE ROLE ${role} LOGIN PASSWORD '${pw}'`);
    }
    await c.query('DROP SCHEMA IF EXISTS adm CASCADE');
    await c.query('CREATE SCHEMA adm AUTHORIZATION adm_agent');
    await c.query('GRANT ALL ON SCHEMA adm TO adm_dba, adm_pay');
  });
  writeFileSync(join(dir, 'policy.json'), JSON.stringify(POLICY));
  writeFileSync(join(dir, 'secrets'), Object.entries(SECRET).map(([r, p]) => `${r} ${p}\n`).join(''));
  chmodSync(join(dir, 'secrets'), 0o600);
  writeFileSync(join(dir, 'seal.key'), 'a'.repeat(40));
  chmodSync(join(dir, 'seal.key'), 0o600);
  const people = {
    agent: ['agent-7@example.com', ['agents']], dba: ['dana@example.com', ['dba-oncall']],
    dba2: ['dmitri@example.com', ['dba-oncall']], sec: ['sam@example.com', ['security']],
    payer: ['pat@example.com', ['payments']], analyst: ['ann@example.com', ['analysts']],
    root: ['root@example.com', ['gateway-admins']],
    support: ['sue@example.com', ['support']], support2: ['stan@example.com', ['support']],
  };
  for (const [k, [email, groups]] of Object.entries(people)) {
    tokens[k] = await idp.token(email, groups);
    emails[k] = email;
  }
  gw = await startGateway(['--upstream', `127.0.0.1:${env.pgPort}`, '--threads', '2', '--policy', join(dir, 'policy.json'),
    '--upstream-secrets', join(dir, 'secrets'), '--jwks-file', idp.file, '--oidc-issuer', idp.issuer,
    '--oidc-audience', idp.audience, '--allow-plaintext-auth', '--admin-listen', '127.0.0.1:0',
    '--approval-timeout', '30', '--record-dir', join(dir, 'rec'), '--record-key-file', join(dir, 'seal.key')]);
});

after(async () => {
  gw.kill('SIGINT');
  gw.kill('SIGINT');
  await gw.exited;
  await withClient(env.pgPort, (c) => c.query('DROP SCHEMA IF EXISTS adm CASCADE'));
  rmSync(dir, { recursive: true, force: true });
});

test('an agent\'s DROP TABLE waits in psql until a DBA approves it with the CLI; a deny carries its reason', async () => {
  await withClient(env.pgPort, (c) => c.query('CREATE TABLE adm.doomed (id int); CREATE TABLE adm.kept (id int); ALTER TABLE adm.doomed OWNER TO adm_agent; ALTER TABLE adm.kept OWNER TO adm_agent'));
  const run = psql('agent', 'DROP TABLE adm.doomed');
  const [held] = await pending('dba', 1, (p) => /doomed/.test(p.statement));
  assert.equal(held.identity, 'agent-7@example.com');
  assert.equal(held.rule, 'agents-hold');
  assert.deepEqual(held.approvers, ['dba-oncall']);
  assert.match(held.id, /^[0-9a-f]{16}$/);
  assert.equal(await tableExists('adm.doomed'), true, 'nothing ran while held');
  // The list as the CLI prints it, then the decision.
  const listed = await cli('dba', 'list');
  assert.equal(listed.code, 0, listed.stderr);
  assert.match(listed.stdout, new RegExp(`${held.id}.*agent-7@example.com.*agents-hold.*DROP TABLE adm.doomed`));
  const approved = await cli('dba', 'approve', held.id);
  assert.equal(approved.code, 0, approved.stderr);
  const r = await run;
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /DROP TABLE/);
  assert.equal(await tableExists('adm.doomed'), false);

  const run2 = psql('agent', 'DROP TABLE adm.kept');
  const [held2] = await pending('dba', 1, (p) => /kept/.test(p.statement));
  const denied = await cli('dba2', 'deny', held2.id, '--reason', 'ask in #db-changes first');
  assert.equal(denied.code, 0, denied.stderr);
  const r2 = await run2;
  assert.notEqual(r2.code, 0);
  assert.match(r2.stderr, /held for approval under policy rule "agents-hold" \(class drop\) was denied by dmitri@example\.com: ask in #db-changes first/);
  assert.equal(await tableExists('adm.kept'), true);
  // Decided already: the CLI says so and fails.
  const again = await cli('dba', 'approve', held2.id);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /404/);
  // The approver's identity (from the token) and the reason are in the recording.
  await sleep(300);
  const exp = await tool(['export', '--record-dir', join(dir, 'rec'), '--format', 'jsonl']);
  const events = exp.stdout.trim().split('\n').map((l) => JSON.parse(l)).filter((e) => e.type === 'approval');
  assert.ok(events.some((e) => e.decision === 'approved' && e.reason === 'approved by dana@example.com'), exp.stdout.slice(0, 2000));
  assert.ok(events.some((e) => e.decision === 'denied' && e.reason === 'denied by dmitri@example.com: ask in #db-changes first'));
  // Each administrator's action is an `admin` record of its own: who, from where, what, on what.
  const admins = exp.stdout.trim().split('\n').map((l) => JSON.parse(l)).filter((e) => e.type === 'admin');
  assert.ok(admins.some((e) => e.identity === 'dana@example.com' && e.client === '127.0.0.1' && e.text === 'approve' &&
    e.target === held.id && e.decision === 'approved'), JSON.stringify(admins));
  assert.ok(admins.some((e) => e.identity === 'dmitri@example.com' && e.text === 'deny' && e.target === held2.id &&
    e.decision === 'denied' && e.reason === 'ask in #db-changes first'));
  assert.ok(admins.some((e) => e.identity === 'dana@example.com' && e.text === 'approve' && e.target === held2.id &&
    /^refused: no pending approval/.test(e.decision)), 'refused attempts too');
});

test('four eyes: nobody approves their own statement; a non-approver gets 403; two-key rules need two people', async () => {
  await withClient(env.pgPort, (c) => c.query('CREATE TABLE adm.own (id int); ALTER TABLE adm.own OWNER TO adm_dba; CREATE TABLE adm.ledger (id int); ALTER TABLE adm.ledger OWNER TO adm_pay; INSERT INTO adm.ledger VALUES (1)'));
  const own = psql('dba', 'DROP TABLE adm.own');
  const [held] = await pending('dba', 1, (p) => /adm\.own/.test(p.statement));
  const self = await api('dba', 'POST', `/api/v1/approvals/${held.id}/approve`);
  assert.equal(self.status, 403);
  assert.match(self.text, /nobody decides their own statement/);
  // Not an approver of this rule (a valid token all the same), nor an admin.
  assert.equal((await api('analyst', 'POST', `/api/v1/approvals/${held.id}/approve`)).status, 403);
  assert.equal((await api('analyst', 'GET', '/api/v1/approvals')).json().length, 0, 'a non-approver sees nothing to decide');
  // An admin of the gateway sees every pending statement but decides only where named.
  assert.ok((await api('root', 'GET', '/api/v1/approvals')).json().some((p) => p.id === held.id));
  assert.equal((await api('root', 'POST', `/api/v1/approvals/${held.id}/approve`)).status, 403);
  assert.equal((await api('dba2', 'POST', `/api/v1/approvals/${held.id}/approve`)).status, 200);
  assert.equal((await own).code, 0);
  assert.equal(await tableExists('adm.own'), false);

  const trunc = psql('payer', 'TRUNCATE adm.ledger');
  const [two] = await pending('sec', 1, (p) => /ledger/.test(p.statement));
  assert.equal(two.approvals_required, 2);
  assert.equal((await api('dba', 'POST', `/api/v1/approvals/${two.id}/approve`)).status, 202);
  assert.equal((await api('dba', 'POST', `/api/v1/approvals/${two.id}/approve`)).status, 409, 'the same person twice is one approval');
  assert.deepEqual((await pending('sec', 1, (p) => p.id === two.id))[0].approved_by, ['dana@example.com']);
  assert.equal(Number((await withClient(env.pgPort, (c) => c.query('SELECT count(*) AS n FROM adm.ledger'))).rows[0].n), 1);
  assert.equal((await api('sec', 'POST', `/api/v1/approvals/${two.id}/approve`)).status, 200);
  const r = await trunc;
  assert.equal(r.code, 0, r.stderr);
  assert.equal(Number((await withClient(env.pgPort, (c) => c.query('SELECT count(*) AS n FROM adm.ledger'))).rows[0].n), 0);
});

test('50 held statements across both cores, decided concurrently: each gets its own decision', async () => {
  const clients = [];
  for (let i = 0; i < 50; i++) {
    const c = new pg.Client({ host: '127.0.0.1', port: gw.port, user: emails.agent, password: tokens.agent, database: 'postgres' });
    await c.connect();
    clients.push(c);
  }
  const results = clients.map((c, i) => c.query(`DROP TABLE IF EXISTS adm.never_${i}`).then(() => 'ran', (e) => e.message));
  const list = await pending('dba', 50, (p) => /never_/.test(p.statement));
  const decisions = await Promise.all(list.map((p) => {
    const i = Number(/never_(\d+)/.exec(p.statement)[1]);
    return api(i % 2 ? 'dba' : 'dba2', 'POST', `/api/v1/approvals/${p.id}/${i % 3 ? 'approve' : 'deny'}`, { reason: `case ${i}` });
  }));
  assert.deepEqual(decisions.map((d) => d.status), Array(50).fill(200));
  const outcomes = await Promise.all(results);
  outcomes.forEach((o, i) => {
    if (i % 3) assert.equal(o, 'ran', `statement ${i}`);
    else assert.match(o, new RegExp(`was denied by .*: case ${i}$`), `statement ${i}`);
  });
  await Promise.all(clients.map((c) => c.end()));
});

test('no token, a bad token, a token for another audience, a foreign Origin or Host: refused', async () => {
  const path = '/api/v1/approvals';
  const none = await adminCall(gw, 'GET', path);
  assert.equal(none.status, 401);
  assert.equal((await fetch(`http://127.0.0.1:${adminPort(gw)}${path}`)).headers.get('www-authenticate'), 'Bearer realm="pgwarden"');
  assert.equal((await adminCall(gw, 'GET', path, { token: tokens.dba.slice(0, -4) + 'AAAA' })).status, 401);
  const other = await idp.token('dana@example.com', ['dba-oncall'], { aud: 'some-other-service' });
  assert.equal((await adminCall(gw, 'GET', path, { token: other })).status, 401);
  const expired = await idp.token('dana@example.com', ['dba-oncall'], { exp: Math.floor(Date.now() / 1000) - 3600 });
  assert.equal((await adminCall(gw, 'GET', path, { token: expired })).status, 401);
  // An agent acting for an administrator is not the administrator.
  const acting = await idp.token('root@example.com', ['gateway-admins'], { claims: { act: { sub: 'agent-7' } } });
  const asAgent = await adminCall(gw, 'GET', '/api/v1/sessions', { token: acting });
  assert.equal(asAgent.status, 401);
  assert.match(asAgent.text, /agent acting for someone/);
  assert.equal((await adminCall(gw, 'GET', '/metrics', { token: tokens.dba })).status, 403, 'metrics are for admins');
  assert.equal((await adminCall(gw, 'GET', '/metrics', { token: tokens.root })).status, 200);
  // A page on another site cannot make the browser decide for its user.
  const evil = await adminCall(gw, 'POST', `${path}/0123456789abcdef/approve`,
    { token: tokens.dba, headers: { Origin: 'https://evil.example' } });
  assert.equal(evil.status, 403);
  assert.match(evil.text, /cross-origin/);
  const same = await adminCall(gw, 'GET', path, { token: tokens.dba, headers: { Origin: `http://127.0.0.1:${adminPort(gw)}` } });
  assert.equal(same.status, 200);
  // DNS rebinding: the browser sends the attacker's name as Host.
  const rebound = await rawRequest(`GET /healthz HTTP/1.1\r\nHost: rebind.evil.example:${adminPort(gw)}\r\nConnection: close\r\n\r\n`);
  assert.match(rebound, /^HTTP\/1\.1 421 /);
  const local = await rawRequest(`GET /healthz HTTP/1.1\r\nHost: localhost:${adminPort(gw)}\r\nConnection: close\r\n\r\n`);
  assert.match(local, /^HTTP\/1\.1 200 /);
});

// Sends raw bytes to the admin port; resolves with everything it answered.
function rawRequest(bytes) {
  return new Promise((resolve, reject) => {
    const s = net.connect(adminPort(gw), '127.0.0.1', () => s.end(bytes));
    let out = '';
    s.on('data', (d) => { out += d; });
    s.on('end', () => resolve(out));
    s.on('error', reject);
  });
}

test('slowloris and oversized requests hold only their own connection: /healthz answers at once', async () => {
  const port = adminPort(gw);
  // Ten connections trickling a request one byte every half second.
  const slow = [];
  for (let i = 0; i < 10; i++) {
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => {});
    s.closedAt = null;
    const started = Date.now();
    s.on('close', () => { s.closedAt = Date.now() - started; });
    const text = `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nX-Slow: ${'a'.repeat(200)}`;
    let k = 0;
    s.timer = setInterval(() => { if (k < text.length && !s.destroyed) s.write(text[k++]); }, 500);
    slow.push(s);
  }
  await sleep(1000);
  for (let i = 0; i < 5; i++) {
    const t0 = Date.now();
    const r = await adminCall(gw, 'GET', '/healthz');
    assert.equal(r.status, 200);
    assert.ok(Date.now() - t0 < 1000, `healthz took ${Date.now() - t0} ms`);
    await sleep(200);
  }
  // An oversized body and oversized headers are refused; others go on.
  const big = await adminCall(gw, 'POST', '/api/v1/approvals/0123456789abcdef/deny', { token: tokens.dba, body: 'x'.repeat(200000) });
  assert.equal(big.status, 413);
  const hugeHeader = await rawRequest(`GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nX-Big: ${'b'.repeat(20000)}\r\n\r\n`);
  assert.doesNotMatch(hugeHeader, /^HTTP\/1\.1 200/);
  assert.equal((await adminCall(gw, 'GET', '/healthz')).status, 200);
  // Each trickling request has 10 s to arrive whole: then its connection is closed.
  await sleep(10500);
  for (const s of slow) {
    clearInterval(s.timer);
    assert.ok(s.closedAt !== null && s.closedAt < 12000, `slow connection closed after ${s.closedAt} ms`);
    s.destroy();
  }
});

test('TLS: the admin API may listen beyond loopback only with a certificate; the CLI speaks HTTPS', async () => {
  const certs = makeCerts(dir, 'admin');
  const t = await startGateway(['--upstream', `127.0.0.1:${env.pgPort}`, '--policy', join(dir, 'policy.json'),
    '--upstream-secrets', join(dir, 'secrets'), '--jwks-file', idp.file, '--oidc-issuer', idp.issuer,
    '--oidc-audience', idp.audience, '--allow-plaintext-auth', '--admin-listen', '0.0.0.0:0',
    '--admin-tls-cert', certs.cert, '--admin-tls-key', certs.key, '--admin-host', 'localhost']);
  try {
    const port = Number(/admin endpoint on 0\.0\.0\.0:(\d+) \(https/.exec(t.log)[1]);
    const ok = await tool(['approvals', 'list', '--admin', `https://localhost:${port}`, '--ca-file', certs.ca],
      { PGWARDEN_TOKEN: tokens.dba });
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^ID\s+WAITS/);
    // Without the CA the certificate is not trusted, and nothing is sent.
    const untrusted = await tool(['approvals', 'list', '--admin', `https://localhost:${port}`], { PGWARDEN_TOKEN: tokens.dba });
    assert.equal(untrusted.code, 1);
    // Plain HTTP on the TLS port gets nothing useful.
    const plain = await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.status, () => 'refused');
    assert.notEqual(plain, 200);
    const health = await new Promise((resolve, reject) => https.get({ host: '127.0.0.1', port, path: '/healthz', ca: readFileSync(certs.ca), servername: 'localhost' },
      (res) => { res.resume(); resolve(res.statusCode); }).on('error', reject));
    assert.equal(health, 200);
  } finally {
    t.kill('SIGINT');
    t.kill('SIGINT');
    await t.exited;
  }
});

test('JIT grant: an approval covers this session\'s same statement shape for grant_seconds, nothing else', async () => {
  await withClient(env.pgPort, (c) => c.query("CREATE TABLE adm.jit (id int, card text); ALTER TABLE adm.jit OWNER TO adm_agent; INSERT INTO adm.jit SELECT g, 'x' FROM generate_series(1, 9) g"));
  const ids = async () => (await withClient(env.pgPort, (c) => c.query('SELECT id FROM adm.jit ORDER BY id'))).rows.map((r) => r.id);
  const sue = new pg.Client({ host: '127.0.0.1', port: gw.port, user: emails.support, password: tokens.support, database: 'postgres' });
  await sue.connect();
  // q(sql): the query's outcome ('ok' or the error), with `decide` approving or denying its hold.
  const q = async (sql, decide) => {
    const run = sue.query(sql).then(() => 'ok', (e) => e.message);
    if (decide) {
      const [h] = await pending('dba', 1, (p) => p.statement === sql);
      assert.equal(h.identity, emails.support);
      assert.equal((await api('dba', 'POST', `/api/v1/approvals/${h.id}/${decide}`)).status, 200);
    }
    return run;
  };
  assert.equal(await q('DELETE FROM adm.jit WHERE id = 1', 'approve'), 'ok');
  // Same shape, another number, same session: runs at once, no new hold.
  const t0 = Date.now();
  assert.equal(await q('DELETE FROM adm.jit WHERE id = 2'), 'ok');
  assert.ok(Date.now() - t0 < 5000);
  assert.deepEqual(await ids(), [3, 4, 5, 6, 7, 8, 9]);
  // Another shape, a string constant (it may name anything), or other classes: held (denied).
  for (const sql of ['DELETE FROM adm.jit WHERE id > 2', "DELETE FROM adm.jit WHERE card = 'y'"]) {
    assert.match(await q(sql, 'deny'), /was denied by dana/);
  }
  // The same shape judged differently (a tautology now): held.
  assert.equal(await q('DELETE FROM adm.jit WHERE id = 100 OR 1 = 0', 'approve'), 'ok');
  assert.match(await q('DELETE FROM adm.jit WHERE id = 101 OR 1 = 1', 'deny'), /was denied by dana/);
  // Another caller with the same shape, or this caller in another session: held (denied).
  const other = psql('support2', 'DELETE FROM adm.jit WHERE id = 3');
  const [h2] = await pending('dba', 1, (p) => p.identity === emails.support2);
  assert.equal((await api('dba', 'POST', `/api/v1/approvals/${h2.id}/deny`)).status, 200);
  assert.notEqual((await other).code, 0);
  const again = psql('support', 'DELETE FROM adm.jit WHERE id = 3');
  const [h3] = await pending('dba', 1, (p) => p.statement === 'DELETE FROM adm.jit WHERE id = 3');
  assert.equal((await api('dba', 'POST', `/api/v1/approvals/${h3.id}/deny`)).status, 200);
  assert.notEqual((await again).code, 0);
  // A statement that can change what the same text means ends the grants.
  assert.equal(await q('DELETE FROM adm.jit WHERE id = 4'), 'ok');
  assert.equal(await q('SET search_path = adm, public'), 'ok');
  assert.match(await q('DELETE FROM adm.jit WHERE id = 5', 'deny'), /was denied/);
  assert.deepEqual(await ids(), [3, 5, 6, 7, 8, 9]);
  await sue.end();
  // What approvers see of a held statement is masked with the caller's profile.
  const card = '4111 1111 1111 1111';
  const ins = psql('support', `INSERT INTO adm.jit VALUES (10, '${card}'), (11, 'pat.doe@example.org')`);
  const [h] = await pending('dba', 1, (p) => /INSERT INTO adm\.jit/.test(p.statement));
  assert.ok(!h.statement.includes(card) && !h.statement.includes('pat.doe@example.org'), h.statement);
  assert.match(h.statement, /INSERT INTO adm\.jit VALUES \(10, '.*'\)/);
  const listed = await cli('dba', 'list');
  assert.ok(!listed.stdout.includes(card));
  assert.equal((await api('dba', 'POST', `/api/v1/approvals/${h.id}/deny`, { reason: 'no' })).status, 200);
  await ins;
  // The log names the held statement by its approval id and size, never by its text (checked
  // once the lines about it have arrived).
  await logMatch(gw, new RegExp(`approval ${h.id} (requested: \\S+ wants to run a statement of \\d+ bytes)`));
  await logMatch(gw, new RegExp(`approval ${h.id}: denied`));
  assert.ok(!gw.log.includes(card), 'the gateway log shows the masked text');
  assert.ok(!gw.log.includes('pat.doe@example.org') && !gw.log.includes('INSERT INTO adm.jit VALUES'), 'statement text in the gateway log');
  // The granted statement is recorded as such.
  await sleep(300);
  const exp = await tool(['export', '--record-dir', join(dir, 'rec'), '--format', 'jsonl']);
  const rec = exp.stdout.trim().split('\n').map((l) => JSON.parse(l));
  assert.ok(rec.some((e) => e.text === 'DELETE FROM adm.jit WHERE id = 2' && e.decision === 'grant' &&
    /^JIT grant approved by dana@example\.com, \d+ s left$/.test(e.reason)), JSON.stringify(rec.filter((e) => /id = 2/.test(e.text || ''))));
});

test('webhooks: signed notifications of each held statement and decision, retried on 500; a dead receiver delays nobody', async () => {
  const secret = 'w'.repeat(40);
  writeFileSync(join(dir, 'hook.key'), secret + '\n');
  chmodSync(join(dir, 'hook.key'), 0o600);
  // A receiver that fails the first two tries of every notification, then takes it.
  const got = [];
  const tries = new Map();
  const receiver = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      const n = (tries.get(body) || 0) + 1;
      tries.set(body, n);
      if (n <= 2) { res.writeHead(500); res.end('try later'); return; }
      got.push({ body, json: JSON.parse(body), sig: req.headers['x-pgwarden-signature'], event: req.headers['x-pgwarden-event'], tries: n });
      res.writeHead(200);
      res.end('ok');
    });
  });
  // A receiver that accepts connections and never answers.
  const dead = net.createServer(() => {});
  await new Promise((r) => receiver.listen(0, '127.0.0.1', r));
  await new Promise((r) => dead.listen(0, '127.0.0.1', r));
  const h = await startGateway(['--upstream', `127.0.0.1:${env.pgPort}`, '--policy', join(dir, 'policy.json'),
    '--upstream-secrets', join(dir, 'secrets'), '--jwks-file', idp.file, '--oidc-issuer', idp.issuer,
    '--oidc-audience', idp.audience, '--allow-plaintext-auth', '--admin-listen', '127.0.0.1:0',
    '--approval-webhook', `http://127.0.0.1:${dead.address().port}/hook`,
    '--approval-webhook', `http://127.0.0.1:${receiver.address().port}/hook`,
    '--approval-webhook-secret-file', join(dir, 'hook.key')],
  // A proxy in the environment is not used for plain-http (loopback) receivers.
  { http_proxy: 'http://127.0.0.1:9', HTTP_PROXY: 'http://127.0.0.1:9' });
  try {
    await withClient(env.pgPort, (c) => c.query("CREATE TABLE adm.hooked (id int, card text); ALTER TABLE adm.hooked OWNER TO adm_agent"));
    const c = new pg.Client({ host: '127.0.0.1', port: h.port, user: emails.support, password: tokens.support, database: 'postgres' });
    await c.connect();
    const t0 = Date.now();
    const run = c.query("INSERT INTO adm.hooked VALUES (1, '4111 1111 1111 1111')").then(() => null, (e) => e);
    let held;
    for (let i = 0; i < 100 && !held; i++) {
      held = (await adminCall(h, 'GET', '/api/v1/approvals', { token: tokens.dba })).json()[0];
      if (!held) await sleep(50);
    }
    assert.ok(held, 'held');
    assert.equal((await adminCall(h, 'POST', `/api/v1/approvals/${held.id}/deny`, { token: tokens.dba, body: { reason: 'use <!channel> the ticket [Approve now](https://evil.example)' } })).status, 200);
    assert.match((await run).message, /denied by dana@example\.com/);
    assert.ok(Date.now() - t0 < 5000, `the dead receiver delayed the session: ${Date.now() - t0} ms`);
    await c.end();
    for (let i = 0; i < 200 && got.length < 2; i++) await sleep(50);
    assert.equal(got.length, 2, JSON.stringify(got));
    const [req, dec] = got;
    for (const g of got) {
      assert.equal(g.sig, 'sha256=' + createHmac('sha256', secret).update(g.body).digest('hex'), 'signed over the body');
      assert.equal(g.tries, 3, 'delivered on the third try');
    }
    assert.equal(req.event, 'approval.requested');
    assert.equal(req.json.id, held.id);
    assert.equal(req.json.identity, 'sue@example.com');
    assert.ok(!req.body.includes('4111 1111 1111 1111'), 'the statement is masked');
    assert.ok(req.json.text.startsWith("pgwarden: sue@example.com wants to run `INSERT INTO adm.hooked VALUES (1, 'REDACTED')` (rule jit, class insert)"), req.json.text);
    assert.ok(req.json.text.endsWith(`pgwarden approvals approve ${held.id}  (or deny ${held.id})`), req.json.text);
    assert.equal(dec.event, 'approval.decided');
    assert.equal(dec.json.decision, 'denied');
    assert.equal(dec.json.by, 'dana@example.com');
    assert.equal(dec.json.decision_reason, 'use <!channel> the ticket [Approve now](https://evil.example)');
    assert.ok(!dec.json.text.includes('[Approve now]'), 'no Markdown link: ' + dec.json.text);
    assert.ok(!dec.json.text.includes('<!channel>'), 'no chat mention injection: ' + dec.json.text);
    assert.match(dec.json.text, /&lt;!channel&gt;/);
  } finally {
    h.kill('SIGINT');
    h.kill('SIGINT');
    const t1 = Date.now();
    await h.exited;
    assert.ok(Date.now() - t1 < 5000, 'a dead receiver does not hold up shutdown');
    receiver.close();
    dead.close();
  }
});

test('live sessions: listed for admins with the statement masked; kill ends one with 57P01 naming the administrator; locks refuse logins', async () => {
  const connect = async (who) => {
    const c = new pg.Client({ host: '127.0.0.1', port: gw.port, user: emails[who], password: tokens[who], database: 'postgres', application_name: `app-${who}` });
    c.ended = new Promise((resolve) => c.on('error', resolve));
    await c.connect();
    return c;
  };
  const sue = await connect('support');
  await sue.query("SELECT '4111 1111 1111 1111' AS card");
  const list = await api('root', 'GET', '/api/v1/sessions');
  assert.equal(list.status, 200, list.text);
  const mine = list.json().find((x) => x.identity === 'sue@example.com');
  assert.ok(mine, list.text);
  assert.match(mine.id, /^[0-9a-f]{16}$/);
  assert.deepEqual(mine.groups, ['support']);
  assert.equal(mine.role, 'adm_agent');
  assert.equal(mine.database, 'postgres');
  assert.equal(mine.application, 'app-support');
  assert.equal(mine.state, 'idle');
  assert.match(mine.client, /^127\.0\.0\.1:\d+$/);
  assert.equal(mine.statement, "SELECT 'REDACTED' AS card");
  assert.equal((await api('dba', 'GET', '/api/v1/sessions')).status, 403, 'sessions are for admins');
  const cliList = await cmd('root', 'sessions', '--live');
  assert.equal(cliList.code, 0, cliList.stderr);
  assert.match(cliList.stdout, new RegExp(`${mine.id}\\s+sue@example.com\\s+127\\.0\\.0\\.1:\\d+\\s+postgres\\s+adm_agent`));
  // Kill, from the CLI.
  const killed = await cmd('root', 'kill', mine.id, '--reason', 'incident 42');
  assert.equal(killed.code, 0, killed.stderr);
  const err = await sue.ended;
  assert.equal(err.code, '57P01');
  assert.match(err.message, /pgwarden session ended by root@example\.com \(incident 42\)/);
  assert.equal((await api('root', 'DELETE', `/api/v1/sessions/${mine.id}`)).status, 404, 'gone');
  // A statement running when its session is ended is canceled: nothing of it commits.
  await withClient(env.pgPort, (c) => c.query('CREATE TABLE adm.slow (id int); ALTER TABLE adm.slow OWNER TO adm_agent'));
  const agent = await connect('agent');
  const slow = agent.query('INSERT INTO adm.slow SELECT 1 FROM pg_sleep(3)').then(() => 'committed', (e) => e.code);
  await sleep(500);
  const running = (await api('root', 'GET', '/api/v1/sessions')).json().find((x) => x.identity === 'agent-7@example.com');
  assert.equal(running.state, 'active');
  assert.equal((await api('root', 'DELETE', `/api/v1/sessions/${running.id}`)).status, 200);
  assert.equal(await slow, '57P01');
  await sleep(3500);
  assert.equal(Number((await withClient(env.pgPort, (c) => c.query('SELECT count(*) AS n FROM adm.slow'))).rows[0].n), 0);
  // Someone who is not an admin is refused, and the attempt is recorded.
  assert.equal((await api('dba', 'POST', '/api/v1/locks', { name: 'sue@example.com', seconds: 60 })).status, 403);
  // Lock an identity: its open sessions end, new logins are refused, until unlocked.
  // Stan's account also has tokens without the e-mail claim (identity: the subject u-stan).
  tokens.stanSub = await idp.token('stan@example.com', ['support'], { withEmail: false, sub: 'u-stan' });
  tokens.support2 = await idp.token('stan@example.com', ['support'], { sub: 'u-stan' });
  emails.stanSub = 'u-stan';
  const stan1 = await connect('support2');
  const stan2 = await connect('support2');
  const stan3 = await connect('stanSub');  // the same account, identity u-stan
  const locked = await cmd('root', 'lock', 'stan@example.com', '--for', '1h', '--reason', 'offboarding');
  assert.equal(locked.code, 0, locked.stderr);
  assert.equal(JSON.parse(locked.stdout).sessions_ended, 3, 'its sessions under either identity end');
  for (const c of [stan1, stan2, stan3]) {
    const e = await c.ended;
    assert.equal(e.code, '57P01');
    assert.match(e.message, /"stan@example\.com" was locked by root@example\.com \(offboarding\)/);
  }
  await assert.rejects(connect('support2'), (e) => e.code === '28000' && /locked by an administrator \(root@example\.com\): offboarding/.test(e.message));
  // The same account under its other identity is locked too (learned from the sessions ended).
  await assert.rejects(connect('stanSub'), (e) => e.code === '28000');
  const locks = await cmd('root', 'locks');
  assert.match(locks.stdout, /stan@example\.com\s+\d+m\d+s\s+root@example\.com\s+offboarding/);
  // A group lock covers its members.
  assert.equal((await api('root', 'POST', '/api/v1/locks', { name: 'support', seconds: 60 })).status, 201);
  await assert.rejects(connect('support'), (e) => e.code === '28000');
  assert.equal((await api('dba', 'POST', '/api/v1/locks', { name: 'support', seconds: 60 })).status, 403);
  assert.equal((await api('root', 'POST', '/api/v1/locks', { name: 'x', seconds: 0 })).status, 400);
  assert.equal((await cmd('root', 'unlock', 'stan@example.com')).code, 0);
  assert.equal((await api('root', 'DELETE', '/api/v1/locks/support')).status, 200);
  const back = await connect('support2');
  await back.end();
  // The end of each session names the administrator in the recording.
  await sleep(300);
  const exp = await tool(['export', '--record-dir', join(dir, 'rec'), '--format', 'jsonl']);
  assert.match(exp.stdout, /57P01 terminating connection due to administrator command: pgwarden session ended by root@example\.com \(incident 42\)/);
  assert.match(exp.stdout, /was locked by root@example\.com \(offboarding\)/);
  const acts = exp.stdout.trim().split('\n').map((l) => JSON.parse(l)).filter((e) => e.type === 'admin' && e.identity === 'root@example.com');
  for (const [text, target, decision] of [['kill', mine.id, 'ended'], ['lock', 'stan@example.com', 'locked for 3600 s (3 sessions ended)'],
    ['unlock', 'stan@example.com', 'unlocked'], ['lock', 'support', 'locked for 60 s (0 sessions ended)'],
    ['kill', running.id, 'ended']]) {
    assert.ok(acts.some((e) => e.text === text && e.target === target && e.decision === decision), `${text} ${target}: ${JSON.stringify(acts)}`);
  }
  const all = exp.stdout.trim().split('\n').map((l) => JSON.parse(l)).filter((e) => e.type === 'admin');
  assert.ok(all.some((e) => e.identity === 'dana@example.com' && e.text === 'locking identities' &&
    e.decision === 'refused: not an admin'), 'refused attempts are recorded');
  // Admin records are chained and sealed like every other: the recording still verifies.
  const verified = await tool(['verify', '--record-dir', join(dir, 'rec'), '--key-file', join(dir, 'seal.key')]);
  assert.equal(verified.code, 0, verified.stdout + verified.stderr);
});

// Raw bytes on one admin connection: everything answered until the server closes it (or 3 s).
function rawExchange(bytes, { port = adminPort(gw), wait = 3000 } = {}) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(bytes));
    let out = '';
    const t0 = Date.now();
    const timer = setTimeout(() => { s.destroy(); resolve({ out, closed: false, ms: Date.now() - t0 }); }, wait);
    s.on('data', (d) => { out += d; });
    s.on('close', () => { clearTimeout(timer); resolve({ out, closed: true, ms: Date.now() - t0 }); });
    s.on('error', () => {});
  });
}
const responses = (out) => (out.match(/^HTTP\/1\.1 \d{3}/gm) || []).length;

test('hostile HTTP: compressed, chunked and length-less bodies, header floods and smuggled requests are refused and close the connection', async () => {
  const port = adminPort(gw);
  const host = `Host: 127.0.0.1:${port}`;
  const rss0 = rssKiB(gw.pid);
  // A 4 GiB brotli bomb is never decompressed; chunked and length-less bodies are not read.
  const bomb = await rawExchange(`POST /api/v1/reload HTTP/1.1\r\n${host}\r\nContent-Encoding: br\r\nContent-Length: 4\r\n\r\nabcd`);
  assert.match(bomb.out, /^HTTP\/1\.1 415 /);
  assert.ok(bomb.closed);
  // The answer says the connection closes, and advertises no keep-alive.
  assert.match(bomb.out, /\r\nConnection: close\r\n/);
  assert.doesNotMatch(bomb.out, /\r\nKeep-Alive:/i);
  const chunked = await rawExchange(`POST /api/v1/reload HTTP/1.1\r\n${host}\r\nTransfer-Encoding: chunked\r\n\r\n${'ffff\r\n' + 'x'.repeat(1000)}`);
  assert.match(chunked.out, /^HTTP\/1\.1 411 /);
  assert.ok(chunked.closed);
  // Without a Content-Length a request has no body (RFC 9112): answered at once, not after 10 s.
  const nolen = await rawExchange(`POST /api/v1/reload HTTP/1.1\r\n${host}\r\nConnection: close\r\n\r\n`);
  assert.match(nolen.out, /^HTTP\/1\.1 401 /);
  assert.ok(nolen.ms < 1000, `answered in ${nolen.ms} ms`);
  const huge = await rawExchange(`POST /api/v1/reload HTTP/1.1\r\n${host}\r\nContent-Length: 99999999\r\n\r\n`);
  assert.match(huge.out, /^HTTP\/1\.1 413 /);
  // Endless headers, or one endless line: the request's byte budget ends it.
  const flood = await rawExchange(`GET /healthz HTTP/1.1\r\n${host}\r\n${'a: b\r\n'.repeat(40000)}\r\n`);
  assert.ok(flood.closed && responses(flood.out) <= 1 && !/^HTTP\/1\.1 200/.test(flood.out), flood.out.slice(0, 200));
  assert.ok(rssKiB(gw.pid) - rss0 < 64 * 1024, 'memory stays bounded');
  // A refused request's body is not read as the next request: one answer, then the connection ends.
  const smuggled = `POST /api/v1/reload HTTP/1.1\r\n${host}\r\nContent-Length: 0\r\n\r\n`;
  for (const carrier of [
    `POST /api/v1/reload HTTP/1.1\r\n${host}\r\nOrigin: null\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}`,
    `POST /api/v1/reload HTTP/1.1\r\nHost: evil.example:${port}\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}`,
    `GET /healthz HTTP/1.1\r\n${host}\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}`,
  ]) {
    const r = await rawExchange(carrier);
    assert.equal(responses(r.out), 1, r.out);
    assert.doesNotMatch(r.out, /^HTTP\/1\.1 (200|401)/m, r.out);
    assert.ok(r.closed);
  }
  // With "Expect: 100-continue", httplib answers 100 before the request is routed: the refusal
  // that follows still closes the connection, and the unread body never runs as a request (it
  // did: only the first header block of a response was looked at).
  const inner = `GET /healthz HTTP/1.1\r\n${host}\r\n\r\n`;
  for (const [headers, status] of [
    [`Host: evil.example:${port}\r\nContent-Length: ${inner.length}`, 421],
    [`${host}\r\nOrigin: null\r\nContent-Length: ${inner.length}`, 403],
    [`${host}\r\nTransfer-Encoding: chunked`, 411],
    [`${host}\r\nContent-Length: ${inner.length}\r\nContent-Encoding: gzip`, 415],
  ]) {
    const r = await rawExchange(`POST /api/v1/reload HTTP/1.1\r\n${headers}\r\nExpect: 100-continue\r\n\r\n${inner}`);
    const finals = r.out.match(/^HTTP\/1\.1 [2-5]\d\d[^\r]*\r\n(?:[^\r]+\r\n)*\r\n/gm) || [];
    assert.equal(finals.length, 1, `one final answer: ${r.out}`);
    assert.match(finals[0], new RegExp(`^HTTP/1\\.1 ${status} `), r.out);
    assert.match(finals[0], /\r\nConnection: close\r\n/, finals[0]);
    assert.doesNotMatch(finals[0], /\r\nKeep-Alive:/i, finals[0]);
    assert.ok(r.closed, 'the connection closed');
  }
  // Header lines httplib would skip (a bare LF, white space before the colon, a folded line, a
  // line without a colon) are refused: a proxy in front may read them, and the body would run as
  // a request here.
  for (const head of [
    `POST /api/v1/reload HTTP/1.1\r\n${host}\r\nContent-Length: ${inner.length}\n\r\n`,
    `POST /api/v1/reload HTTP/1.1\r\n${host}\r\nContent-Length : ${inner.length}\r\n\r\n`,
    `POST /api/v1/reload HTTP/1.1\r\n${host}\r\nX-A: b\r\n Content-Length: ${inner.length}\r\n\r\n`,
    `POST /api/v1/reload HTTP/1.1\r\n${host}\r\nContent-Length: ${inner.length}\r\nno colon\r\n\r\n`,
    `POST /api/v1/reload HTTP/1.1\n${host}\r\nContent-Length: ${inner.length}\r\n\r\n`,
    // httplib percent-decodes header values: "%34%38" would be 48 here, nothing to a proxy.
    `POST /api/v1/reload HTTP/1.1\r\n${host}\r\nContent-Length: ${[...String(inner.length)].map((d) => '%3' + d).join('')}\r\n\r\n`,
    `POST /api/v1/reload HTTP/1.1\r\n${host}\r\ncontent-LENGTH: %u0034${String(inner.length).slice(1)}\r\n\r\n`,
  ]) {
    const r = await rawExchange(head + inner);
    assert.ok(responses(r.out) <= 1, r.out);
    if (responses(r.out) === 1) {
      assert.match(r.out, /^HTTP\/1\.1 400 [^]*\r\nConnection: close\r\n/, r.out);
      assert.doesNotMatch(r.out, /\r\nKeep-Alive:/i, r.out);
    }
    assert.ok(r.closed, `closed after ${JSON.stringify(head)}`);
  }
  // HTTP/1.0 closes after each request unless it asks otherwise: the answer says so.
  const old = await rawExchange(`GET /healthz HTTP/1.0\r\n${host}\r\n\r\n`);
  assert.match(old.out, /^HTTP\/1\.1 200 [^]*\r\nConnection: close\r\n/, old.out);
  assert.doesNotMatch(old.out, /\r\nKeep-Alive:/i, old.out);
  assert.ok(old.closed);
  const kept = await rawExchange(`GET /healthz HTTP/1.0\r\n${host}\r\nConnection: Keep-Alive\r\n\r\n`, { wait: 1000 });
  assert.match(kept.out, /\r\nKeep-Alive: timeout=\d+/, kept.out);
  assert.ok(!kept.closed, 'kept alive as asked');
  // A request that is let in gets its 100 and its answer, on a connection kept alive.
  const cont = await rawExchange(`POST /api/v1/reload HTTP/1.1\r\n${host}\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n{}` +
    `GET /healthz HTTP/1.1\r\n${host}\r\nConnection: close\r\n\r\n`);
  assert.match(cont.out, /^HTTP\/1\.1 100 /, cont.out);
  assert.match(cont.out, /\r\n\r\nHTTP\/1\.1 401 [^]*\r\nKeep-Alive: timeout=\d+[^]*HTTP\/1\.1 200 /, cont.out);
  // Only our own addresses pass as Host or Origin.
  assert.match((await rawExchange(`GET /healthz HTTP/1.1\r\nHost: 8.8.8.8:${port}\r\n\r\n`)).out, /^HTTP\/1\.1 421 /);
  const foreign = await adminCall(gw, 'GET', '/api/v1/approvals', { token: tokens.dba, headers: { Origin: `http://10.1.2.3:${port}` } });
  assert.equal(foreign.status, 403);
  // A token header crafted to forge log lines is logged on one line.
  const forged = await idp.token('x@example.com', [], { kid: 'k\n2026-01-01T00:00:00.000000Z INFO admin: FORGED' });
  assert.equal((await adminCall(gw, 'GET', '/api/v1/approvals', { token: forged })).status, 401);
  await sleep(100);
  assert.doesNotMatch(gw.log, /\nFORGED|\n2026-01-01T00:00:00.000000Z INFO admin: FORGED/);
});

test('more connections than --admin-max-connections: /healthz still answers, the rest get 503', async () => {
  const port = adminPort(gw);
  const idle = [];
  for (let i = 0; i < 66; i++) {
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => {});
    idle.push(s);
  }
  await sleep(500);
  try {
    for (let i = 0; i < 5; i++) {
      const t0 = Date.now();
      const r = await adminCall(gw, 'GET', '/healthz');
      assert.equal(r.status, 200);
      assert.ok(Date.now() - t0 < 1000);
    }
    const busy = await rawExchange(`GET /api/v1/approvals HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
    const open = /^pgwarden_admin_connections (\d+)$/m.exec((await adminCall(gw, 'GET', '/metrics', { token: tokens.root })).text);
    assert.doesNotMatch(busy.out, /^HTTP\/1\.1 (200|401)/, `only health probes pass over the cap (${open && open[1]} open)`);
  } finally {
    for (const s of idle) s.destroy();
  }
});

test('a kept-alive connection outlives its advertised Keep-Alive timeout: a client whose idle timer fires late still gets an answer', async () => {
  // HTTP clients reuse an idle connection until the server's `Keep-Alive: timeout=` hint (less a
  // margin) runs out on their own timers, which run late on a loaded host (undici's, under the
  // MCP SDK, tick at most twice a second). A POST written to a connection the server has just
  // closed fails with no answer ("fetch failed"), so the server holds idle connections longer than
  // it says. Here the client's event loop stalls past the hint, then reuses the connection.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const call = (method, path) => new Promise((resolve, reject) => {
    const headers = method === 'POST' ? { 'Content-Type': 'application/json', 'Content-Length': '2' } : {};
    const req = http.request({ host: '127.0.0.1', port: adminPort(gw), method, path, agent, headers }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, keepAlive: res.headers['keep-alive'], reused: req.reusedSocket, text }));
    });
    req.on('error', reject);
    req.end(method === 'POST' ? '{}' : undefined);
  });
  try {
    const first = await call('GET', '/healthz');
    assert.equal(first.status, 200);
    const hint = Number(/timeout=(\d+)/.exec(first.keepAlive ?? '')?.[1]);
    assert.ok(hint >= 1, `Keep-Alive: ${first.keepAlive}`);
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, hint * 1000 + 1500);  // the stall
    const late = await call('POST', '/api/v1/locks');
    assert.equal(late.reused, true, 'the request went out on the idle connection');
    assert.equal(late.status, 401, late.text);
  } finally {
    agent.destroy();
  }
});

test('a held statement ends with its client: cancelled (57014) or disconnected, it is withdrawn and never runs', async () => {
  await withClient(env.pgPort, (c) => c.query('CREATE TABLE adm.cancel_me (id int); ALTER TABLE adm.cancel_me OWNER TO adm_agent'));
  const c = new pg.Client({ host: '127.0.0.1', port: gw.port, user: emails.agent, password: tokens.agent, database: 'postgres' });
  await c.connect();
  const run = c.query('DROP TABLE adm.cancel_me').then(() => null, (e) => e);
  const [held] = await pending('dba', 1, (p) => /cancel_me/.test(p.statement));
  // What psql sends on Ctrl-C: a CancelRequest with the session's key, on a new connection.
  const cancel = Buffer.alloc(16);
  cancel.writeInt32BE(16, 0);
  cancel.writeInt32BE(80877102, 4);
  cancel.writeInt32BE(c.processID, 8);
  cancel.writeInt32BE(c.secretKey, 12);
  await new Promise((resolve) => { const s = net.connect(gw.port, '127.0.0.1', () => s.end(cancel)); s.on('close', resolve); });
  const err = await run;
  assert.equal(err && err.code, '57014', String(err));
  assert.equal((await api('dba', 'POST', `/api/v1/approvals/${held.id}/approve`)).status, 404, 'withdrawn');
  assert.equal(await tableExists('adm.cancel_me'), true);
  assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1, 'the session goes on');
  await c.end();
  // psql killed while it waits: the statement is withdrawn within a tick or two.
  const { spawn } = await import('node:child_process');
  const p = spawn('psql', ['-X', '-w', '-h', '127.0.0.1', '-p', String(gw.port), '-U', emails.agent, '-d', 'postgres',
    '-c', 'DROP TABLE adm.cancel_me'], { env: { ...process.env, PGPASSWORD: tokens.agent }, stdio: 'ignore' });
  const [held2] = await pending('dba', 1, (x) => /cancel_me/.test(x.statement));
  p.kill('SIGKILL');
  let gone = false;
  for (let i = 0; i < 40 && !gone; i++) {
    await sleep(100);
    gone = !(await api('dba', 'GET', '/api/v1/approvals')).json().some((x) => x.id === held2.id);
  }
  assert.ok(gone, 'withdrawn after the client died');
  assert.equal((await api('dba', 'POST', `/api/v1/approvals/${held2.id}/approve`)).status, 404);
  assert.equal(await tableExists('adm.cancel_me'), true);
});

test('four eyes holds across one person\'s tokens: an admin token without the e-mail claim is still the requester', async () => {
  await withClient(env.pgPort, (c) => c.query('CREATE TABLE adm.mine (id int); ALTER TABLE adm.mine OWNER TO adm_dba'));
  const run = psql('dba', 'DROP TABLE adm.mine');
  const [held] = await pending('dba2', 1, (p) => /adm\.mine/.test(p.statement));
  const subOnly = await idp.token(emails.dba, ['dba-oncall'], { withEmail: false });
  const r = await adminCall(gw, 'POST', `/api/v1/approvals/${held.id}/approve`, { token: subOnly });
  assert.equal(r.status, 403, r.text);
  assert.match(r.text, /own statement/);
  assert.equal((await api('dba2', 'POST', `/api/v1/approvals/${held.id}/deny`)).status, 200);
  assert.notEqual((await run).code, 0);
});
