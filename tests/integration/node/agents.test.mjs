// Agents acting for people: tokens from an OAuth token exchange (RFC 8693) name the user in
// "sub" and the agent in "act". The role comes from the user's groups; only rules for agents
// apply, masking profiles may be the agent's; both identities are recorded. Tokens whose JSON
// repeats a claim, or whose e-mail is not verified, are refused; and a long session refreshes
// its token with SET pgwarden.token (psql, node pg) without it ever reaching PostgreSQL or the
// recording.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync, chmodSync, rmSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { env, withClient, startGateway, sleep, makeIdp, logMatch } from './lib.mjs';

const SECRET = { ag_reader: 'agents-Reader-Secret-1', ag_dba: 'agents-Dba-Secret-2' };
const POLICY = {
  may_act: [
    { actor: 'agent-7', for_groups: ['analysts', 'dba'], actor_groups: ['ai-agents'] },
    { actor: 'dba-bot', for_groups: ['dba'] },
    { actor: 'planner' },
  ],
  role_mappings: [
    { group: 'dba', role: 'ag_dba', database: 'postgres' },
    { group: 'analysts', role: 'ag_reader', database: 'postgres' },
  ],
  rules: [
    { name: 'dba-bot', actors: ['dba-bot'], groups: ['dba'] },
    { name: 'agents', actor_groups: ['ai-agents'], deny: ['drop', 'truncate'] },
    { name: 'dba', groups: ['dba'] },
    { name: 'analysts', groups: ['analysts'], read_only: true },
  ],
  masking: [{ name: 'agents-view', actor_groups: ['ai-agents'], detectors: { email: 'redact' } }],
};
const TRACE = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
let dir, gw, idp;

const connect = async (user, password) => {
  const c = new pg.Client({ host: '127.0.0.1', port: gw.port, user, password, database: 'postgres' });
  await c.connect();
  return c;
};
const loginError = async (user, password) => {
  try {
    const c = await connect(user, password);
    await c.end();
    return null;
  } catch (e) {
    return e;
  }
};
const exported = () => new Promise((resolve, reject) => execFile(env.bin, ['export', '--record-dir', join(dir, 'rec'), '--format', 'jsonl'],
  { maxBuffer: 64 << 20 }, (err, stdout) => (err ? reject(err) : resolve(stdout.trim().split('\n').map((l) => JSON.parse(l))))));
const recordingBytes = () => {
  const all = [];
  for (const d of readdirSync(join(dir, 'rec'))) for (const f of readdirSync(join(dir, 'rec', d))) all.push(readFileSync(join(dir, 'rec', d, f)));
  return Buffer.concat(all);
};

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pgw-agents-'));
  idp = await makeIdp(dir, { audience: 'pgwarden-agents' });
  await withClient(env.pgPort, async (c) => {
    for (const [role, pw] of Object.entries(SECRET)) {
      await c.query(`DROP ROLE IF EXISTS ${role}`);
      await c.query(`CREATE ROLE ${role} LOGIN PASSWORD '${pw}'`);
    }
    await c.query('DROP SCHEMA IF EXISTS agt CASCADE');
    await c.query('CREATE SCHEMA agt AUTHORIZATION ag_dba');
    await c.query('GRANT USAGE ON SCHEMA agt TO ag_reader');
    await c.query('CREATE TABLE agt.people (id int, email text)');
    await c.query("INSERT INTO agt.people VALUES (1, 'carol@example.org')");
    await c.query('ALTER TABLE agt.people OWNER TO ag_dba');
    await c.query('GRANT SELECT ON agt.people TO ag_reader');
  });
  writeFileSync(join(dir, 'policy.json'), JSON.stringify(POLICY));
  writeFileSync(join(dir, 'secrets'), Object.entries(SECRET).map(([r, p]) => `${r} ${p}\n`).join(''));
  chmodSync(join(dir, 'secrets'), 0o600);
  writeFileSync(join(dir, 'seal.key'), 'k'.repeat(40));
  chmodSync(join(dir, 'seal.key'), 0o600);
  gw = await startGateway(['--upstream', `127.0.0.1:${env.pgPort}`, '--threads', '1', '--policy', join(dir, 'policy.json'),
    '--upstream-secrets', join(dir, 'secrets'), '--jwks-file', idp.file, '--oidc-issuer', idp.issuer,
    '--oidc-audience', idp.audience, '--allow-plaintext-auth', '--token-grace', '0',
    '--record-dir', join(dir, 'rec'), '--record-key-file', join(dir, 'seal.key')]);
});

after(async () => {
  gw.kill('SIGINT');
  gw.kill('SIGINT');
  await gw.exited;
  await withClient(env.pgPort, (c) => c.query('DROP SCHEMA IF EXISTS agt CASCADE'));
  rmSync(dir, { recursive: true, force: true });
});

test('an agent acting for a DBA runs as the DBA\'s role under the agents\' rule: no DROP, masked rows; both on record', async () => {
  const asAgent = await connect('dana@example.com', await idp.token('dana@example.com', ['dba'],
    { claims: { act: { sub: 'agent-7' }, azp: 'claude-code' } }));
  try {
    assert.equal((await asAgent.query('SELECT current_user AS u')).rows[0].u, 'ag_dba');
    assert.equal((await asAgent.query('SELECT email FROM agt.people')).rows[0].email, 'REDACTED');
    await assert.rejects(asAgent.query('DROP TABLE agt.people'), (e) => e.code === '42501' && /rule "agents"/.test(e.message));
    await assert.rejects(asAgent.query('TRUNCATE agt.people'), (e) => e.code === '42501');
    // sqlcommenter: the agent's intent and trace context, beside the statement.
    await asAgent.query(`SELECT count(*) FROM agt.people /*intent='count%20the%20people',traceparent='${TRACE}'*/`);
  } finally {
    await asAgent.end();
  }
  // Dana herself: the DBA rule, no masking profile.
  const dana = await connect('dana@example.com', await idp.token('dana@example.com', ['dba']));
  assert.equal((await dana.query('SELECT email FROM agt.people')).rows[0].email, 'carol@example.org');
  await dana.query('CREATE TABLE agt.scratch (id int)');
  await dana.end();
  // An agent with a rule of its own (dba-bot, for DBAs) may DROP.
  const bot = await connect('dana@example.com', await idp.token('dana@example.com', ['dba'], { claims: { act: { sub: 'dba-bot' } } }));
  await bot.query('DROP TABLE agt.scratch');
  await bot.end();
  await sleep(300);
  const recs = await exported();
  const start = recs.find((r) => r.type === 'session_start' && (r.actors || []).includes('agent-7'));
  assert.ok(start, 'the agent\'s session start');
  assert.equal(start.identity, 'dana@example.com');
  assert.deepEqual(start.actors, ['agent-7']);
  assert.equal(start.client_id, 'claude-code');
  assert.equal(start.role, 'ag_dba');
  const refused = recs.find((r) => r.type === 'refused' && r.session === start.session && /DROP TABLE/.test(r.text));
  assert.ok(refused, 'the agent\'s refused DROP');
  assert.equal(refused.rule, 'agents');
  const counted = recs.find((r) => r.type === 'query' && r.session === start.session && /count\(\*\)/.test(r.text));
  assert.equal(counted.intent, 'count the people');
  assert.equal(counted.traceparent, TRACE);
});

test('a wire client\'s application_name carries intent and trace context for its statements; a statement\'s own comment wins', async () => {
  const token = await idp.token('ann@example.com', ['analysts']);
  const c = new pg.Client({ host: '127.0.0.1', port: gw.port, user: 'ann@example.com', password: token, database: 'postgres',
    application_name: `nightly-report intent='month%20end',traceparent='${TRACE}'` });
  await c.connect();
  await c.query('SELECT 41 AS from_app');
  await c.query("SELECT 42 AS own /*intent='its%20own'*/");
  await c.end();
  await sleep(300);
  const recs = await exported();
  const fromApp = recs.find((r) => r.type === 'query' && /from_app/.test(r.text));
  assert.equal(fromApp.intent, 'month end');
  assert.equal(fromApp.traceparent, TRACE);
  const own = recs.find((r) => r.type === 'query' && /AS own/.test(r.text));
  assert.equal(own.intent, 'its own');
  assert.equal(own.traceparent, TRACE);
});

test('replay shows what a caller wrote, escape sequences included, as text', async () => {
  const c = await connect('ann@example.com', await idp.token('ann@example.com', ['analysts']));
  await c.query("SELECT 1 /*intent='weekly%20report%1B%5B2K%1B%5B1A%0D%0A2026-01-01 00:00:00 +0.0s  QUERY    forged'*/");
  // A statement's own lines are kept, indented where no record line starts.
  await c.query('SELECT 2 /* multi\n2026-01-01 00:00:00 +0.0s  QUERY    forged too */');
  await c.end();
  await sleep(300);
  const rec = (await exported()).find((r) => r.type === 'query' && /weekly report/.test(r.intent || ''));
  const out = await new Promise((resolve, reject) => execFile(env.bin, ['replay', '--record-dir', join(dir, 'rec'), '--session', rec.session],
    { maxBuffer: 64 << 20 }, (err, stdout) => (err ? reject(err) : resolve(stdout))));
  assert.match(out, /INTENT   weekly report\\x1b\[2K\\x1b\[1A\\x0d/);
  assert.ok(!out.includes('\x1b'), 'a raw escape character in replay');
  assert.match(out, /weekly report\\x1b\[2K\\x1b\[1A\\x0d\\x0a2026-01-01/);
  assert.match(out, /SELECT 2 \/\* multi\n  \| 2026-01-01 00:00:00 \+0\.0s  QUERY    forged too/);
  // Every line is a record (it starts with its time) or indented under one: nothing forged.
  for (const line of out.split('\n').filter((l) => l !== '')) {
    assert.match(line, /^(\d{4}-\d\d-\d\d[ T]| )/, `a line no record starts: ${line}`);
    assert.ok(!line.startsWith('2026-01-01'), `a forged record line: ${line}`);
  }
});

test('agents the policy does not let act for the user are refused at login, and so is every actor in a chain', async () => {
  const stranger = await loginError('ann@example.com', await idp.token('ann@example.com', ['analysts'], { claims: { act: { sub: 'stranger' } } }));
  assert.equal(stranger?.code, '28000');
  assert.match(stranger.message, /agent "stranger" may not act for "ann@example.com"/);
  // dba-bot may act for DBAs only.
  const wrongUser = await loginError('ann@example.com', await idp.token('ann@example.com', ['analysts'], { claims: { act: { sub: 'dba-bot' } } }));
  assert.equal(wrongUser?.code, '28000');
  // A chain: agent-7 acting for ann on behalf of an orchestrator nobody allowed.
  const chain = await loginError('ann@example.com', await idp.token('ann@example.com', ['analysts'],
    { claims: { act: { sub: 'agent-7', act: { sub: 'rogue-orchestrator' } } } }));
  assert.equal(chain?.code, '28000');
  assert.match(chain.message, /rogue-orchestrator/);
  // May act for anyone, but no rule is for it: refused rather than left unjudged.
  const planner = await loginError('ann@example.com', await idp.token('ann@example.com', ['analysts'], { claims: { act: { sub: 'planner' } } }));
  assert.equal(planner?.code, '28000');
  assert.match(planner.message, /no policy rule is for agent "planner"/);
  // A chain of allowed actors works, and is recorded in order.
  const ok = await connect('ann@example.com', await idp.token('ann@example.com', ['analysts'],
    { claims: { act: { sub: 'agent-7', act: { sub: 'planner' } } } }));
  assert.equal((await ok.query('SELECT 1 AS one')).rows[0].one, 1);
  await ok.end();
  await sleep(300);
  const start = (await exported()).find((r) => r.type === 'session_start' && (r.actors || [])[1] === 'planner' && r.role);
  assert.deepEqual(start.actors, ['agent-7', 'planner']);
});

test('tokens that repeat a claim, or carry an unverified e-mail, are refused', async () => {
  const iat = Math.floor(Date.now() / 1000);
  const claims = `"iss":"${idp.issuer}","aud":"${idp.audience}","sub":"ann@example.com","iat":${iat},"exp":${iat + 600}`;
  // Read first-wins, this is ann the analyst; read last-wins, a DBA.
  const twice = await idp.rawToken('{"alg":"ES256","kid":"admin-key"}',
    `{${claims},"email":"ann@example.com","groups":["analysts"],"groups":["dba"]}`);
  const e1 = await loginError('ann@example.com', twice);
  assert.equal(e1?.code, '28000');
  const header = await idp.rawToken('{"alg":"ES256","kid":"admin-key","kid":"other"}', `{${claims},"email":"ann@example.com","groups":["analysts"]}`);
  assert.equal((await loginError('ann@example.com', header))?.code, '28000');
  // The same token written once is fine (the hand-made signing is right).
  const once = await idp.rawToken('{"alg":"ES256","kid":"admin-key"}', `{${claims},"email":"ann@example.com","groups":["analysts"]}`);
  assert.equal(await loginError('ann@example.com', once), null);
  const unverified = await idp.token('ann@example.com', ['analysts'], { claims: { email_verified: false } });
  assert.equal((await loginError('ann@example.com', unverified))?.code, '28000');
  await logMatch(gw, /email is not verified/);
  await logMatch(gw, /claims repeat a member name/);
});

const psqlScript = (user, password, script) => new Promise((resolve) => {
  const p = execFile('psql', ['-X', '-w', '-h', '127.0.0.1', '-p', String(gw.port), '-U', user, '-d', 'postgres', '-At', '-v', 'ON_ERROR_STOP=1'],
    { env: { ...process.env, PGPASSWORD: password } }, (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stdout, stderr }));
  p.stdin.end(script);
});

test('psql: SET pgwarden.token keeps a session going past its first token\'s expiry; without it the session ends', async () => {
  const shortLived = () => idp.token('ann@example.com', ['analysts'], { exp: '3s' });
  const fresh = await idp.token('ann@example.com', ['analysts'], { exp: '10m' });
  const refreshed = await psqlScript('ann@example.com', await shortLived(),
    `SELECT 'before';\nSET pgwarden.token = '${fresh}';\nSELECT pg_sleep(4);\nSELECT 'after';\n`);
  assert.equal(refreshed.code, 0, refreshed.stderr);
  assert.match(refreshed.stdout, /before[\s\S]*after/);
  const expired = await psqlScript('ann@example.com', await shortLived(), "SELECT 'before';\nSELECT pg_sleep(4);\nSELECT 'after';\n");
  assert.notEqual(expired.code, 0);
  assert.match(expired.stderr, /token expired/);
  assert.doesNotMatch(expired.stdout, /after/);
  // A token issued to another OAuth client ends the session too.
  const withClientId = await idp.token('ann@example.com', ['analysts'], { claims: { azp: 'claude-code' } });
  const rogue = await idp.token('ann@example.com', ['analysts'], { claims: { azp: 'rogue-tool' } });
  const swapped = await psqlScript('ann@example.com', withClientId, `SET pgwarden.token = '${rogue}';\nSELECT 'still here';\n`);
  assert.notEqual(swapped.code, 0);
  assert.match(swapped.stderr, /another client/);
  // A token for someone else ends the session.
  const other = await idp.token('dana@example.com', ['dba']);
  const hijack = await psqlScript('ann@example.com', fresh, `SET pgwarden.token = '${other}';\nSELECT 'still here';\n`);
  assert.notEqual(hijack.code, 0);
  assert.match(hijack.stderr, /another subject/);
  assert.doesNotMatch(hijack.stdout, /still here/);
});

test('node pg: refresh on a live client, refusals for other forms, and no token in PostgreSQL or the recording', async () => {
  const first = await idp.token('ann@example.com', ['analysts'], { exp: '3s' });
  const c = await connect('ann@example.com', first);
  const fresh = await idp.token('ann@example.com', ['analysts'], { exp: '10m' });
  const r = await c.query(`SET pgwarden.token = '${fresh}'`);
  assert.equal(r.command, 'SET');
  // Any other form naming the setting is refused, never forwarded: quoted, with another
  // statement, in a Parse, via set_config.
  for (const sql of [`SET "pgwarden"."token" = '${fresh}'`, `SET pgwarden.token = '${fresh}'; SELECT 1`,
    `SELECT set_config('pgwarden.token', '${fresh}', false)`]) {
    await assert.rejects(c.query(sql), (e) => e.code === '0A000', sql);
  }
  await assert.rejects(c.query({ name: 'tok', text: `SET pgwarden.token = '${fresh}'` }), (e) => e.code === '0A000');
  // A bad token is refused and the session goes on with the one it has.
  await assert.rejects(c.query("SET pgwarden.token = 'not.a.token'"), (e) => e.code === '28000');
  // In a transaction too, with the transaction state kept.
  await c.query('BEGIN');
  await c.query(`SET pgwarden.token = '${fresh}'`);
  assert.equal((await c.query('SELECT 2 AS two')).rows[0].two, 2);
  await c.query('COMMIT');
  await sleep(4000);
  assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1);
  // PostgreSQL never saw the setting (asked without naming it, which pgwarden would refuse).
  assert.equal((await c.query("SELECT current_setting('pgwarden.' || 'token', true) AS t")).rows[0].t, null);
  await c.end();
  // A client that does not refresh ends at its first statement after expiry.
  const lapsing = await connect('ann@example.com', await idp.token('ann@example.com', ['analysts'], { exp: '2s' }));
  lapsing.on('error', () => {});
  await sleep(3000);
  await assert.rejects(lapsing.query('SELECT 1'), /token expired/);
  await lapsing.end().catch(() => {});
  await sleep(300);
  const bytes = recordingBytes();
  assert.ok(!bytes.includes(fresh.split('.')[2]), 'a refreshed token\'s signature is in the recording');
  assert.ok(!bytes.includes('eyJ'), 'a token is in the recording');
  assert.ok(!gw.log.includes(fresh.split('.')[2]), 'a token in the log');
  const recs = await exported();
  assert.ok(recs.some((x) => x.type === 'token' && /^refreshed/.test(x.reason)), 'the refresh is on record');
  assert.ok(recs.some((x) => x.type === 'token' && /^refused: a statement naming pgwarden.token/.test(x.reason)));
});
