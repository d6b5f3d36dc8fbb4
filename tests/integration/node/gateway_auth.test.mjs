// Gateway authentication end to end: callers prove themselves to pgwarden with OIDC tokens
// (minted here by `jose`) or as static SCRAM users (psql), never holding a database credential;
// pgwarden maps their groups to a role and logs in upstream with a password only it knows.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import https from 'node:https';
import { mkdtempSync, writeFileSync, chmodSync, rmSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import * as jose from 'jose';
import { env, pgConfig, withClient, startGateway, makeCerts, sleep, Wire, startupPacket, message, query, errorFields } from './lib.mjs';

const ISS = 'https://idp.test';
const AUD = 'pgwarden-it';
const SECRET = {
  analyst: 'analyst-Upstream-Secret-1', writer: 'writer-Upstream-Secret-2',
  md5user: 'md5-Upstream-Secret-3', plainuser: 'plain-Upstream-Secret-4',
};
let dir, gw, gwLog = '', keys = {};

async function token(sub, { groups = ['analysts'], exp = '5m', key = 'rs', email = sub, kid } = {}) {
  const k = keys[key];
  const jwt = new jose.SignJWT({ email, groups }).setProtectedHeader({ alg: k.alg, kid: kid ?? k.kid })
    .setIssuer(ISS).setAudience(AUD).setSubject(sub).setIssuedAt();
  if (typeof exp === 'number') jwt.setExpirationTime(exp);
  else jwt.setExpirationTime(exp);
  return jwt.sign(k.privateKey);
}

const publicJwk = async (n) => ({ ...(await jose.exportJWK(keys[n].publicKey)), kid: keys[n].kid, alg: keys[n].alg });

const client = (user, password, extra = {}) => new pg.Client({ host: '127.0.0.1', port: gw.port, user, password, database: 'postgres', ...extra });

async function refused(user, password, code) {
  const c = client(user, password);
  await assert.rejects(c.connect(), (e) => {
    assert.equal(e.code, code, e.message);
    assert.match(e.message, /authentication failed for user/);
    return true;
  });
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pgw-auth-'));
  await withClient(env.pgPort, async (c) => {
    for (const [role, pw] of Object.entries(SECRET)) {
      await c.query(`DROP ROLE IF EXISTS ${role}`);
      await c.query(`SET password_encryption = '${role === 'md5user' ? 'md5' : 'scram-sha-256'}'`);
      await c.query(`CREATE ROLE ${role} LOGIN PASSWORD '${pw}'`);
    }
    await c.query("SET password_encryption = 'scram-sha-256'");
    // A static break-glass user's SCRAM verifier, made by PostgreSQL itself from a password.
    await c.query('DROP ROLE IF EXISTS verifier_source');
    await c.query("CREATE ROLE verifier_source PASSWORD 'glass-Breaker-9'");
    const { rows } = await c.query("SELECT rolpassword FROM pg_authid WHERE rolname = 'verifier_source'");
    writeFileSync(join(dir, 'users'), `# static users\nbreakglass ${rows[0].rolpassword} oncall\n`);
  });
  for (const [name, alg] of [['rs', 'RS256'], ['es', 'ES256'], ['ed', 'EdDSA'], ['evil', 'RS256']]) {
    const pair = await jose.generateKeyPair(alg, { extractable: true, ...(alg === 'EdDSA' ? { crv: 'Ed25519' } : {}) });
    keys[name] = { ...pair, alg, kid: `${name}-key` };
  }
  const jwks = { keys: await Promise.all(['rs', 'es', 'ed'].map(publicJwk)) };
  writeFileSync(join(dir, 'jwks.json'), JSON.stringify(jwks));
  writeFileSync(join(dir, 'policy.json'), JSON.stringify({ role_mappings: [
    { group: 'analysts', role: 'analyst', database: 'postgres' },
    { group: 'oncall', role: 'writer' },
    { group: 'md5group', role: 'md5user', database: 'postgres' },
    { group: 'plaingroup', role: 'plainuser', database: 'postgres' },
    { group: 'dbadmins', role: 'writer', database: 'postgres', allow_role_change: true },
  ] }));
  writeFileSync(join(dir, 'seal.key'), 'k'.repeat(48));
  chmodSync(join(dir, 'seal.key'), 0o600);
  writeFileSync(join(dir, 'secrets'), Object.entries(SECRET).map(([r, p]) => `${r} ${p}\n`).join(''));
  chmodSync(join(dir, 'secrets'), 0o600);
  gw = await startGateway(['--upstream', `127.0.0.1:${env.pgPort}`, '--policy', join(dir, 'policy.json'),
    '--upstream-secrets', join(dir, 'secrets'), '--jwks-file', join(dir, 'jwks.json'), '--oidc-issuer', ISS,
    '--oidc-audience', AUD, '--users-file', join(dir, 'users'), '--allow-plaintext-auth', '--log-level', 'debug',
    '--identity-guc', 'pgwarden.identity', '--record-dir', join(dir, 'rec'), '--record-key-file', join(dir, 'seal.key')]);
  gw.stderr.on('data', (d) => { gwLog += d; });
});

after(async () => {
  gw.kill('SIGINT');
  gw.kill('SIGINT');
  await gw.exited;
  rmSync(dir, { recursive: true, force: true });
});

test('an OIDC caller runs as the mapped role, with the identity in application_name', async () => {
  for (const key of ['rs', 'es', 'ed']) {
    const c = client('alice@example.com', await token('alice@example.com', { key }));
    await c.connect();
    const { rows } = await c.query("SELECT current_user AS u, application_name AS a FROM pg_stat_activity WHERE pid = pg_backend_pid()");
    assert.equal(rows[0].u, 'analyst', key);
    assert.match(rows[0].a, /^alice@example\.com via pgwarden/);
    await c.end();
  }
});

test('--identity-guc also passes the identity as a custom setting the database can read', async () => {
  const c = client('alice@example.com', await token('alice@example.com'));
  await c.connect();
  assert.equal((await c.query("SELECT current_setting('pgwarden.identity') AS i")).rows[0].i, 'alice@example.com');
  await c.end();
  // A client cannot choose that setting itself through the startup packet.
  const w = new Wire(gw.port);
  await w.connected();
  w.write(startupPacket({ user: 'alice@example.com', database: 'postgres', 'pgwarden.identity': 'mallory@example.com' }));
  assert.equal((await w.next(['R', 'E'])).type, 'R');
  w.write(message('p', Buffer.from(`${await token('alice@example.com')}\0`)));
  const ready = await w.next(['Z', 'E']);
  assert.equal(ready.type, 'Z', ready.type === 'E' ? errorFields(ready.body).M : '');
  w.write(query("SELECT current_setting('pgwarden.identity')"));
  const row = await w.next(['D', 'E']);
  assert.equal(row.type, 'D', row.type === 'E' ? errorFields(row.body).M : '');
  assert.equal(row.body.subarray(6).toString(), 'alice@example.com');
  w.end();
});

test('pgwarden logs in upstream with md5 too, but never sends its password in the clear unencrypted', async () => {
  const c = client('alice@example.com', await token('alice@example.com', { groups: ['md5group'] }));
  await c.connect();
  assert.equal((await c.query('SELECT current_user AS u')).rows[0].u, 'md5user');
  await c.end();
  // plainuser's server-side method is "password" (cleartext); this upstream leg is not TLS.
  const p = client('alice@example.com', await token('alice@example.com', { groups: ['plaingroup'] }));
  await assert.rejects(p.connect(), (e) => e.code === '28000' && /could not log in to the upstream/.test(e.message));
  await sleep(200);
  assert.match(gwLog, /cleartext over an unencrypted connection/);
});

test('the client cannot pick its role at startup: role settings are refused, allowed settings pass', async () => {
  for (const options of ['-c role=postgres', '-c session_authorization=postgres', '--role=postgres',
    '-c log_statement=none', '-B 1000']) {
    const c = client('alice@example.com', await token('alice@example.com'), { options });
    await assert.rejects(c.connect(), (e) => e.code === '42501' && /not allowed/.test(e.message), options);
  }
  // As a startup parameter of its own (libpq passes unknown connection keywords this way).
  for (const [k, v] of [['role', 'postgres'], ['session_authorization', 'postgres'], ['replication', 'database']]) {
    const w = new Wire(gw.port);
    await w.connected();
    w.write(startupPacket({ user: 'alice@example.com', database: 'postgres', [k]: v }));
    const e = await w.next(['E', 'R']);
    assert.equal(e.type, 'E', `${k} must be refused before authentication`);
    assert.equal(errorFields(e.body).C, '42501');
    w.end();
  }
  // Ordinary settings in options reach the server, and the role is the mapped one.
  const c = client('alice@example.com', await token('alice@example.com'), { options: '-c search_path=pg_catalog -c statement_timeout=12345' });
  await c.connect();
  const { rows } = await c.query("SELECT current_user AS u, current_setting('search_path') AS p, current_setting('statement_timeout') AS t");
  assert.deepEqual(rows[0], { u: 'analyst', p: 'pg_catalog', t: '12345ms' });
  await c.end();
});

test('a newer minor protocol version or _pq_ options get NegotiateProtocolVersion from pgwarden, as PostgreSQL sends it', async () => {
  const w = new Wire(gw.port);
  await w.connected();
  w.write(startupPacket({ user: 'alice@example.com', database: 'postgres', '_pq_.future': 'x' }, (3 << 16) | 2));
  const v = await w.next(['v', 'E', 'R']);
  assert.equal(v.type, 'v');
  assert.equal(v.body.readInt32BE(0), 3 << 16);
  assert.equal(v.body.readInt32BE(4), 1);
  assert.equal(v.body.toString('latin1', 8).replace(/\0+$/, ''), '_pq_.future');
  assert.equal((await w.next(['R', 'E'])).type, 'R'); // then authentication goes on
  w.end();
});

test('the caller cannot leave the mapped role: SET ROLE and friends end the session with 42501', async () => {
  const attempts = [
    'SET ROLE postgres', 'set/**/role postgres', 'RESET ROLE', 'SET SESSION AUTHORIZATION postgres',
    "SELECT set_config('role', 'postgres', false)", 'SELECT 1; SET LOCAL ROLE postgres',
    "DO $$ BEGIN EXECUTE 'SET ROLE postgres'; END $$",
    // Found by the parser, however spelled.
    'SET U&"rol\\0065" = postgres', 'SET "ROLE" = postgres', "DO $$ BEGIN PERFORM 1; END $$",
  ];
  for (const sql of attempts) {
    const c = client('alice@example.com', await token('alice@example.com'));
    c.on('error', () => {});
    await c.connect();
    await assert.rejects(c.query(sql), (e) => e.code === '42501' && /changing the session role is not allowed/.test(e.message), sql);
    await c.end().catch(() => {});
  }
  // The extended protocol (Parse) is checked too, parameters or not.
  const c = client('alice@example.com', await token('alice@example.com'));
  c.on('error', () => {});
  await c.connect();
  await assert.rejects(c.query({ text: 'SELECT set_config($1, $2, false)', values: ['role', 'postgres'] }), (e) => e.code === '42501');
  await c.end().catch(() => {});
  // Ordinary statements that merely mention roles run, and the role never changed.
  const ok = client('alice@example.com', await token('alice@example.com'));
  await ok.connect();
  const { rows } = await ok.query("SELECT 'SET ROLE postgres' AS t, current_setting('role') AS r, current_user AS u");
  assert.deepEqual(rows[0], { t: 'SET ROLE postgres', r: 'none', u: 'analyst' });
  await ok.end();
});

test('a mapping with allow_role_change lets its callers SET ROLE; PostgreSQL still judges the target', async () => {
  const c = client('dana@example.com', await token('dana@example.com', { groups: ['dbadmins'] }));
  await c.connect();
  await c.query('SET ROLE writer');
  await c.query('RESET ROLE');
  await assert.rejects(c.query('SET ROLE analyst'), (e) => e.code === '42501' && !/pgwarden/.test(e.message));
  assert.equal((await c.query('SELECT current_user AS u')).rows[0].u, 'writer');
  await c.end();
});

test('a refused statement is answered after what the client sent before it', async () => {
  const w = new Wire(gw.port);
  await w.connected();
  w.write(startupPacket({ user: 'alice@example.com', database: 'postgres' }));
  assert.equal((await w.next(['R'])).body.readInt32BE(0), 3); // cleartext password: the token
  w.write(message('p', Buffer.from((await token('alice@example.com')) + '\0')));
  assert.ok(await w.next(['Z']));
  w.write(Buffer.concat([query('SELECT 41 + 1'), query('SET ROLE postgres')]));
  const row = await w.next(['D']);
  assert.match(row.body.toString(), /42/);
  const e = await w.next(['E']);
  assert.equal(errorFields(e.body).C, '42501');
  assert.equal(errorFields(e.body).V, 'FATAL');
  assert.ok(await w.closedWithin(3000));
});

test('hostile or mismatched tokens are refused with 28000 and a generic message', async () => {
  await refused('alice@example.com', await token('alice@example.com', { key: 'evil', kid: 'rs-key' }), '28000'); // forged
  await refused('alice@example.com', await token('mallory@example.com'), '28000'); // someone else's token
  await refused('alice@example.com', await token('alice@example.com', { groups: ['visitors'] }), '28000'); // no mapping
  await refused('alice@example.com', await token('alice@example.com', { exp: Math.floor(Date.now() / 1000) - 3600 }), '28000');
  await refused('alice@example.com', 'not-a-token', '28000');
  await refused('alice@example.com', 'x'.repeat(20000), '28000');
  const none = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify({ email: 'alice@example.com', groups: ['analysts'], iss: ISS, aud: AUD, exp: 9999999999 })).toString('base64url')}.`;
  await refused('alice@example.com', none, '28000');
  await sleep(300); // the precise reasons are in the gateway's log, not in what clients saw
  for (const why of ['bad token signature', 'is not the user name', 'no role mapping', 'token expired', 'token too large', 'not valid base64url']) {
    assert.ok(gwLog.includes(why), `gateway log lacks "${why}"`);
  }
});

test('a token expiring mid-session ends the session at the next statement with 28000', async () => {
  const exp = Math.floor(Date.now() / 1000) + 3;
  const c = client('alice@example.com', await token('alice@example.com', { exp }));
  c.on('error', () => {});
  await c.connect();
  assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1);
  await sleep((exp + 1) * 1000 - Date.now() + 200);
  await assert.rejects(c.query('SELECT 2'), (e) => e.code === '28000' && /token expired/.test(e.message));
});

function psql(user, password, sql, port = gw.port, extraEnv = {}) {
  return new Promise((resolve) => {
    execFile('psql', ['-X', '-w', '-tA', '-h', '127.0.0.1', '-p', String(port), '-U', user, '-d', 'postgres', '-c', sql],
      { env: { ...process.env, PGPASSWORD: password, ...extraEnv } }, (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stdout, stderr }));
  });
}

test('a static SCRAM user logs in with psql; a wrong password gets 28P01', async () => {
  const ok = await psql('breakglass', 'glass-Breaker-9', 'SELECT current_user');
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(ok.stdout.trim(), 'writer');
  const bad = await psql('breakglass', 'glass-breaker-9', 'SELECT 1');
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /authentication failed for user "breakglass"/);
});

test('the upstream passwords appear in no log line and no client error', async () => {
  await refused('alice@example.com', 'nope', '28000');
  for (const s of Object.values(SECRET)) {
    assert.ok(!gwLog.includes(s), 'gateway log leaks an upstream password');
  }
});

test('the recording names the caller, its groups and role, refusals, failed logins and expiry; never a secret', async () => {
  await sleep(300); // batch durability: records reach the files within milliseconds
  const out = await new Promise((resolve) => execFile(env.bin, ['export', '--record-dir', join(dir, 'rec'), '--format', 'jsonl'],
    { maxBuffer: 64 << 20 }, (err, stdout, stderr) => resolve({ err, stdout, stderr })));
  assert.equal(out.err, null, out.stderr);
  const events = out.stdout.trim().split('\n').map((l) => JSON.parse(l));
  const starts = events.filter((e) => e.type === 'session_start');
  const alice = starts.find((e) => e.identity === 'alice@example.com' && e.role === 'analyst');
  assert.ok(alice, 'alice\'s session start');
  assert.deepEqual(alice.groups, ['analysts']);
  assert.equal(alice.auth_method, 'oidc');
  const ends = events.filter((e) => e.type === 'session_end');
  assert.ok(ends.some((e) => e.reason === '28000 token expired'), 'token expiry recorded');
  assert.ok(ends.some((e) => /^28000 authentication failed/.test(e.reason)), 'failed login recorded');
  const refusal = events.find((e) => e.type === 'refused' && e.text === 'SET ROLE postgres');
  assert.equal(refusal.sqlstate, '42501');
  assert.match(refusal.reason, /changing the session role is not allowed/);
  const glass = starts.find((e) => e.identity === 'breakglass' && e.auth_method === 'scram');
  assert.ok(glass, 'the static user\'s session start');
  assert.equal(glass.role, 'writer');
  // Its failed attempt (a wrong password) is recorded too, with no role.
  const failed = starts.find((e) => e.identity === 'breakglass' && e.auth_method === 'gateway (not authenticated)');
  assert.ok(failed, 'the failed login');
  assert.equal(failed.role, '');
  const dirs = readdirSync(join(dir, 'rec'));
  for (const d of dirs) {
    for (const f of readdirSync(join(dir, 'rec', d))) {
      const bytes = readFileSync(join(dir, 'rec', d, f));
      for (const secret of Object.values(SECRET)) assert.ok(!bytes.includes(secret), `${f} holds an upstream password`);
      assert.ok(!bytes.includes('eyJ'), `${f} holds a token`);
      assert.ok(!bytes.includes('glass-Breaker-9'), `${f} holds a static user's password`);
    }
  }
});

test('upstream secrets can come from an environment variable instead of a file', async () => {
  const proc = await startGateway(['--threads', '1', '--upstream', `127.0.0.1:${env.pgPort}`,
    '--policy', join(dir, 'policy.json'), '--upstream-secrets', 'env:PGW_TEST_SECRETS', '--jwks-file', join(dir, 'jwks.json'),
    '--oidc-issuer', ISS, '--oidc-audience', AUD, '--allow-plaintext-auth'],
  { PGW_TEST_SECRETS: Object.entries(SECRET).map(([r, p]) => `${r} ${p}`).join('\n') });
  try {
    const c = new pg.Client({ host: '127.0.0.1', port: proc.port, user: 'alice@example.com', password: await token('alice@example.com'), database: 'postgres' });
    await c.connect();
    assert.equal((await c.query('SELECT current_user AS u')).rows[0].u, 'analyst');
    await c.end();
    // Wiped from pgwarden's environment once read: /proc shows none of the passwords.
    const environ = readFileSync(`/proc/${proc.pid}/environ`, 'latin1');
    for (const pw of Object.values(SECRET)) assert.ok(!environ.includes(pw), 'secret still in /proc/PID/environ');
  } finally {
    proc.kill('SIGINT');
    proc.kill('SIGINT');
    await proc.exited;
  }
});

test('start-up refuses a secrets file others can read, and OIDC on a non-loopback listener', async () => {
  chmodSync(join(dir, 'secrets'), 0o644);
  const run = (args) => new Promise((resolve) => execFile(env.bin, args, (err, _o, stderr) => resolve({ code: err ? err.code : 0, stderr })));
  const common = ['--upstream', `127.0.0.1:${env.pgPort}`, '--policy', join(dir, 'policy.json'), '--upstream-secrets', join(dir, 'secrets'),
    '--jwks-file', join(dir, 'jwks.json'), '--oidc-issuer', ISS, '--oidc-audience', AUD, '--allow-plaintext-auth'];
  const leaky = await run(['--listen', '127.0.0.1:0', ...common]);
  assert.equal(leaky.code, 1);
  assert.match(leaky.stderr, /readable by others/);
  chmodSync(join(dir, 'secrets'), 0o600);
  const exposed = await run(['--listen', '0.0.0.0:0', ...common]);
  assert.equal(exposed.code, 1);
  assert.match(exposed.stderr, /configure --tls-cert/);
});

test('with TLS configured, tokens are accepted over TLS and refused in the clear', async () => {
  const certs = makeCerts(dir, 'authtls');
  const tlsGw = await startGateway(['--upstream', `127.0.0.1:${env.pgPort}`, '--threads', '1', '--policy', join(dir, 'policy.json'),
    '--upstream-secrets', join(dir, 'secrets'), '--jwks-file', join(dir, 'jwks.json'), '--oidc-issuer', ISS,
    '--oidc-audience', AUD, '--users-file', join(dir, 'users'), '--tls-cert', certs.cert, '--tls-key', certs.key]);
  try {
    const base = { host: '127.0.0.1', port: tlsGw.port, user: 'alice@example.com', database: 'postgres' };
    const secure = new pg.Client({ ...base, password: await token('alice@example.com'),
      ssl: { ca: readFileSync(certs.ca), servername: 'localhost', rejectUnauthorized: true } });
    await secure.connect();
    assert.equal((await secure.query('SELECT current_user AS u')).rows[0].u, 'analyst');
    await secure.end();
    // psql too: verify-full against the gateway's certificate, user = identity, password = token.
    const viaPsql = await new Promise((resolve) => execFile('psql', ['-X', '-w', '-tA',
      `host=localhost port=${tlsGw.port} user=alice@example.com dbname=postgres sslmode=verify-full sslrootcert=${certs.ca}`,
      '-c', 'SELECT current_user'], { env: { ...process.env, PGPASSWORD: '' } }, (err, stdout, stderr) => resolve({ err, stdout, stderr })));
    assert.ok(viaPsql.err, 'psql without the token must fail');
    const tok = await token('alice@example.com');
    const psqlOk = await new Promise((resolve) => execFile('psql', ['-X', '-w', '-tA',
      `host=localhost port=${tlsGw.port} user=alice@example.com dbname=postgres sslmode=verify-full sslrootcert=${certs.ca}`,
      '-c', 'SELECT current_user'], { env: { ...process.env, PGPASSWORD: tok } }, (err, stdout, stderr) => resolve({ err, stdout, stderr })));
    assert.equal(psqlOk.err, null, psqlOk.stderr);
    assert.equal(psqlOk.stdout.trim(), 'analyst');
    // Errors reach the client inside the TLS session too.
    const forged = new pg.Client({ ...base, password: await token('alice@example.com', { key: 'evil', kid: 'rs-key' }),
      ssl: { ca: readFileSync(certs.ca), servername: 'localhost', rejectUnauthorized: true } });
    await assert.rejects(forged.connect(), (e) => e.code === '28000' && /authentication failed/.test(e.message));
    const clear = new pg.Client({ ...base, password: await token('alice@example.com') });
    await assert.rejects(clear.connect(), (e) => e.code === '28000' && /requires TLS/.test(e.message));
    // Static SCRAM users need no TLS: the password never crosses the wire.
    const r = await psql('breakglass', 'glass-Breaker-9', 'SELECT current_user', tlsGw.port, { PGSSLMODE: 'disable' });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'writer');
    // Over TLS, SCRAM is bound to the TLS session (SCRAM-SHA-256-PLUS, tls-server-end-point).
    const bound = await psql('breakglass', 'glass-Breaker-9', 'SELECT current_user', tlsGw.port,
      { PGSSLMODE: 'require', PGCHANNELBINDING: 'require' });
    assert.equal(bound.code, 0, bound.stderr);
    assert.equal(bound.stdout.trim(), 'writer');
    const wrong = await psql('breakglass', 'not-it', 'SELECT 1', tlsGw.port, { PGSSLMODE: 'require', PGCHANNELBINDING: 'require' });
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.stderr, /authentication failed/);
  } finally {
    tlsGw.kill('SIGINT');
    tlsGw.kill('SIGINT');
    await tlsGw.exited;
  }
});

test('repeated failed logins from one address are throttled, even with a good token after', async () => {
  const strict = await startGateway(['--upstream', `127.0.0.1:${env.pgPort}`, '--threads', '1', '--policy', join(dir, 'policy.json'),
    '--upstream-secrets', join(dir, 'secrets'), '--jwks-file', join(dir, 'jwks.json'), '--oidc-issuer', ISS,
    '--oidc-audience', AUD, '--allow-plaintext-auth', '--auth-failure-limit', '3', '--auth-failure-window', '60']);
  try {
    const attempt = (password) => new pg.Client({ host: '127.0.0.1', port: strict.port, user: 'alice@example.com', password, database: 'postgres' }).connect();
    const good = await token('alice@example.com');
    const c = new pg.Client({ host: '127.0.0.1', port: strict.port, user: 'alice@example.com', password: good, database: 'postgres' });
    await c.connect(); // works before any failure
    await c.end();
    for (let i = 0; i < 3; i++) await assert.rejects(attempt('wrong'), (e) => e.code === '28000' && /authentication failed/.test(e.message));
    await assert.rejects(attempt(good), (e) => e.code === '28000' && /too many failed authentication attempts/.test(e.message));
  } finally {
    strict.kill('SIGINT');
    strict.kill('SIGINT');
    await strict.exited;
  }
});

test('keys from --jwks-url over https: IdP down at start, loaded on retry, rotated keys picked up on an unknown kid', async () => {
  const certs = makeCerts(dir, 'idp');
  let served = null; // null: the identity provider answers 503
  let fetches = 0;
  const idp = https.createServer({ cert: readFileSync(certs.cert), key: readFileSync(certs.key) }, (req, res) => {
    fetches++;
    if (req.url !== '/jwks' || served === null) { res.writeHead(503); res.end('down'); return; }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(served));
  });
  await new Promise((r) => idp.listen(0, '127.0.0.1', r));
  const url = `https://localhost:${idp.address().port}/jwks`;
  let log = '';
  const g = await startGateway(['--upstream', `127.0.0.1:${env.pgPort}`, '--threads', '1', '--policy', join(dir, 'policy.json'),
    '--upstream-secrets', join(dir, 'secrets'), '--jwks-url', url, '--jwks-ca', certs.ca, '--oidc-issuer', ISS,
    '--oidc-audience', AUD, '--users-file', join(dir, 'users'), '--allow-plaintext-auth', '--auth-failure-limit', '0']);
  g.stderr.on('data', (d) => { log += d; });
  const login = async (key) => {
    const c = new pg.Client({ host: '127.0.0.1', port: g.port, user: 'alice@example.com', password: await token('alice@example.com', { key }), database: 'postgres' });
    await c.connect();
    const u = (await c.query('SELECT current_user AS u')).rows[0].u;
    await c.end();
    return u;
  };
  const eventually = async (fn, ms) => {
    const until = Date.now() + ms;
    for (;;) {
      try { return await fn(); } catch (e) { if (Date.now() > until) throw e; }
      await sleep(250);
    }
  };
  try {
    // The IdP is down: tokens cannot be checked, but break-glass static users still get in.
    await assert.rejects(login('rs'), (e) => e.code === '28000');
    const glass = await psql('breakglass', 'glass-Breaker-9', 'SELECT current_user', g.port);
    assert.equal(glass.code, 0, glass.stderr);
    assert.equal(glass.stdout.trim(), 'writer');
    // It comes back: the retry loads the keys.
    served = { keys: [await publicJwk('rs')] };
    assert.equal(await eventually(() => login('rs'), 15000), 'analyst');
    // The IdP rotates in a new key: a token naming it triggers an early refresh.
    served = { keys: [await publicJwk('rs'), await publicJwk('es')] };
    const before = fetches;
    assert.equal(await eventually(() => login('es'), 20000), 'analyst');
    assert.ok(fetches > before, 'the new key came from a fresh fetch');
    // A broken key set from the IdP keeps the keys in force.
    served = { keys: [{ kty: 'RSA', kid: 'broken', n: '!!', e: 'AQAB' }] };
    const broken = fetches;
    await assert.rejects(login('ed'), (e) => e.code === '28000'); // unknown kid: asks for a refresh
    await eventually(async () => { assert.ok(fetches > broken); }, 20000);
    await sleep(300);
    assert.equal(await login('rs'), 'analyst');
    assert.match(log, /keeping the keys in force/);
  } finally {
    g.kill('SIGINT');
    g.kill('SIGINT');
    await g.exited;
    idp.close();
  }
  // Keys from plain http on another host could be swapped by anyone on the path: refused.
  const run = (args) => new Promise((resolve) => execFile(env.bin, args, (err, _o, stderr) => resolve({ code: err ? err.code : 0, stderr })));
  const plain = await run(['--upstream', `127.0.0.1:${env.pgPort}`, '--policy', join(dir, 'policy.json'),
    '--upstream-secrets', join(dir, 'secrets'), '--jwks-url', 'http://idp.example.com/jwks', '--oidc-issuer', ISS, '--oidc-audience', AUD]);
  assert.equal(plain.code, 2);
  assert.match(plain.stderr, /must use https/);
});

test('gateway authentication: a replication connection needs a rule naming the caller, checked once it is authenticated', async () => {
  const rules = { rules: [{ name: 'backup', groups: ['oncall'], replication: true }, { name: 'rest', groups: ['analysts'] }] };
  const mappings = JSON.parse(readFileSync(join(dir, 'policy.json'), 'utf8')).role_mappings;
  writeFileSync(join(dir, 'repl-policy.json'), JSON.stringify({ role_mappings: mappings, ...rules }));
  const g = await startGateway(['--upstream', `127.0.0.1:${env.pgPort}`, '--policy', join(dir, 'repl-policy.json'),
    '--upstream-secrets', join(dir, 'secrets'), '--jwks-file', join(dir, 'jwks.json'), '--oidc-issuer', ISS,
    '--oidc-audience', AUD, '--users-file', join(dir, 'users'), '--allow-plaintext-auth']);
  await withClient(env.pgPort, (c) => c.query('ALTER ROLE writer REPLICATION'));
  try {
    const connect = async (user, password) => {
      const c = new pg.Client({ host: '127.0.0.1', port: g.port, user, password, database: 'postgres', replication: 'database' });
      await c.connect();
      try {
        return (await c.query('IDENTIFY_SYSTEM')).rows[0];
      } finally {
        await c.end().catch(() => {});
      }
    };
    // An analyst (rule "rest") is refused after proving who it is; nothing reached the server as it.
    await assert.rejects(connect('alice@example.com', await token('alice@example.com')), (e) => {
      assert.equal(e.code, '42501', e.message);
      assert.match(e.message, /replication connections are refused unless a policy rule allows them.*rule "rest" does not/);
      return true;
    });
    // The on-call break-glass user's rule allows it: the upstream login as its role is a replication one.
    const row = await connect('breakglass', 'glass-Breaker-9');
    assert.match(row.systemid, /^\d+$/);
    assert.ok(row.xlogpos, JSON.stringify(row));
  } finally {
    await withClient(env.pgPort, (c) => c.query('ALTER ROLE writer NOREPLICATION'));
    g.kill('SIGINT');
    g.kill('SIGINT');
    await g.exited;
  }
});
