// Shared helpers: environment of the running test servers, a raw v3 protocol client for hostile
// input, and spawning extra pgwarden instances with their own flags.
import net from 'node:net';
import { createSign } from 'node:crypto';
import { spawn, execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync, existsSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import * as jose from 'jose';

export const env = {
  gwPort: Number(process.env.PGW_PORT),
  pgPort: Number(process.env.PG_PORT),
  bin: process.env.PGW_BIN,
  password: process.env.PGPASSWORD,
  pgLog: process.env.PG_LOG,
};

export function pgConfig(port, extra = {}) {
  return { host: '127.0.0.1', port, user: 'postgres', password: env.password, database: 'postgres', ...extra };
}

export async function withClient(port, fn, extra = {}) {
  const c = new pg.Client(pgConfig(port, extra));
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => {});
  }
}

export function startupPacket(params, version = 196608) {
  const body = Buffer.from(Object.entries(params).map(([k, v]) => `${k}\0${v}\0`).join('') + '\0');
  const head = Buffer.alloc(8);
  head.writeInt32BE(8 + body.length, 0);
  head.writeUInt32BE(version, 4);
  return Buffer.concat([head, body]);
}

export function message(type, body = Buffer.alloc(0), lengthOverride) {
  const head = Buffer.alloc(5);
  head.write(type, 0, 'latin1');
  head.writeUInt32BE(lengthOverride ?? body.length + 4, 1);
  return Buffer.concat([head, body]);
}

export function query(sql) {
  return message('Q', Buffer.from(sql + '\0'));
}

export function errorFields(body) {
  const out = {};
  let pos = 0;
  while (pos < body.length && body[pos] !== 0) {
    const code = String.fromCharCode(body[pos]);
    const end = body.indexOf(0, pos + 1);
    out[code] = body.toString('utf8', pos + 1, end);
    pos = end + 1;
  }
  return out;
}

// A raw protocol connection that parses backend messages as they arrive.
export class Wire {
  constructor(port) {
    this.sock = net.connect(port, '127.0.0.1');
    this.buf = Buffer.alloc(0);
    this.messages = [];
    this.counts = {};
    this.waiters = [];
    this.keepRows = true;
    this.closed = new Promise((resolve) => this.sock.on('close', () => resolve(true)));
    this.sock.on('error', () => {});
    this.sock.on('data', (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.parse();
    });
    this.sock.on('close', () => this.wake());
  }
  connected() {
    return new Promise((resolve, reject) => {
      this.sock.once('connect', resolve);
      this.sock.once('error', reject);
    });
  }
  parse() {
    while (this.buf.length >= 5) {
      const len = this.buf.readUInt32BE(1);
      if (this.buf.length < len + 1) break;
      const type = String.fromCharCode(this.buf[0]);
      this.counts[type] = (this.counts[type] ?? 0) + 1;
      // Bulk rows are only counted, so a large result does not pile up here.
      if (type !== 'D' || this.keepRows) this.messages.push({ type, body: Buffer.from(this.buf.subarray(5, len + 1)) });
      this.buf = this.buf.subarray(len + 1);
    }
    this.wake();
  }
  wake() {
    const w = this.waiters;
    this.waiters = [];
    w.forEach((f) => f());
  }
  write(b) {
    this.sock.write(b);
  }
  // Next message whose type is in `types` (skipping others), or null once the socket closed.
  async next(types, timeoutMs = 5000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.messages.findIndex((m) => types.includes(m.type));
      if (i >= 0) return this.messages.splice(0, i + 1)[i];
      if (this.sock.destroyed || this.sock.readableEnded) return null;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${types}`);
      await new Promise((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  }
  async closedWithin(ms) {
    return Promise.race([this.closed, new Promise((r) => setTimeout(() => r(false), ms))]);
  }
  end() {
    this.sock.destroy();
  }
}

// A session as role 'trusted' (trust auth in the test cluster), ready for queries; `params`
// adds to or replaces the startup parameters.
export async function readySession(port, params = {}) {
  const w = new Wire(port);
  await w.connected();
  w.write(startupPacket({ user: 'trusted', database: 'postgres', ...params }));
  const z = await w.next(['Z', 'E']);
  if (!z || z.type !== 'Z') throw new Error('startup failed: ' + JSON.stringify(z && errorFields(z.body)));
  return w;
}

// What a client sees of state pgwarden's own queries could disturb, with `between()` (a reload)
// run after the client prepared the unnamed statement and opened a transaction block: whether
// SET TRANSACTION still runs (no snapshot was taken), and whether the unnamed statement of the
// earlier batch still binds. Until then, everything goes as named statements (a simple Query
// would replace the unnamed statement, a Parse of a SELECT would take the snapshot).
// `isolation: false` leaves SET TRANSACTION out.
export async function unnamedStatementAcross(port, between, { isolation = true } = {}) {
  const w = await readySession(port);
  const seen = [];
  const answers = async () => {
    for (;;) {
      const m = await w.next(['C', 'D', 'E', 'Z'], 10000);
      if (m.type === 'Z') return;
      seen.push(m.type === 'E' ? `E:${errorFields(m.body).C}` : m.type === 'D' ? `D:${m.body.toString('latin1', 6)}` : 'C');
    }
  };
  const cstr = (s) => Buffer.from(s + '\0');
  const run = (statement) => Buffer.concat([message('B', Buffer.concat([cstr(''), cstr(statement), Buffer.alloc(6)])),
    message('E', Buffer.concat([cstr(''), Buffer.alloc(4)])), message('S')]);
  const named = async (name, sql) => {
    w.write(Buffer.concat([message('P', Buffer.concat([cstr(name), cstr(sql), Buffer.alloc(2)])), run(name)]));
    await answers();
  };
  w.write(Buffer.concat([message('P', Buffer.concat([cstr(''), cstr('SELECT 42 AS n'), Buffer.alloc(2)])), message('S')]));
  await answers();
  await named('b', 'BEGIN');
  await between();
  if (isolation) await named('t', 'SET TRANSACTION ISOLATION LEVEL SERIALIZABLE');
  w.write(run(''));
  await answers();
  w.write(query('SHOW transaction_isolation'));
  await answers();
  w.write(query('COMMIT'));
  await answers();
  w.end();
  return seen;
}

// Starts another pgwarden with extra flags; resolves once it listens.
export function startGateway(args, extraEnv = {}) {
  return new Promise((resolve, reject) => {
    const proc = spawn(env.bin, ['--listen', '127.0.0.1:0', '--no-pin', ...args], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, ...extraEnv },
    });
    let log = '';
    const timer = setTimeout(() => reject(new Error('gateway did not start: ' + log)), 10000);
    proc.stderr.on('data', (d) => {
      log += d;
      proc.log = log;
      const m = /listening on 127\.0\.0\.1:(\d+)/.exec(log);
      if (m && !proc.port) {
        proc.port = Number(m[1]);
        clearTimeout(timer);
        resolve(proc);
      }
    });
    proc.exited = new Promise((r) => proc.on('exit', (code, signal) => r({ code, signal })));
    proc.on('error', reject);
  });
}

export function rssKiB(pid) {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m[1]);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A throwaway CA and a server certificate for localhost/127.0.0.1, made with the openssl CLI.
export function makeCerts(dir, tag = 'server') {
  const run = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  if (!existsSync(join(dir, 'ca.pem'))) {
    run('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=pgwarden test CA');
  }
  writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  run('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${tag}.key`, '-out', `${tag}.csr`, '-subj', `/CN=localhost/O=${tag}`);
  run('x509', '-req', '-in', `${tag}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${tag}.pem`, '-days', '2', '-extfile', 'ext.cnf');
  return { ca: join(dir, 'ca.pem'), cert: join(dir, `${tag}.pem`), key: join(dir, `${tag}.key`) };
}

// A local identity provider for the admin API: an ES256 key, its JWKS file, and the tokens it
// mints (`token(email, groups)`). `flags` make a gateway without gateway authentication verify
// admin tokens with it; a gateway with gateway authentication uses `file` as its --jwks-file.
export async function makeIdp(dir, { issuer = 'https://idp.test', audience = 'pgwarden-admin' } = {}) {
  const { publicKey, privateKey } = await jose.generateKeyPair('ES256', { extractable: true });
  const file = join(dir, 'admin-jwks.json');
  writeFileSync(file, JSON.stringify({ keys: [{ ...(await jose.exportJWK(publicKey)), kid: 'admin-key', alg: 'ES256' }] }));
  // `withEmail: false` leaves the e-mail claim out (the identity is then "sub", the same account).
  // `claims` adds claims (act, azp, email_verified...).
  const token = (email, groups = [], { exp = '10m', aud = audience, withEmail = true, kid = 'admin-key', sub = email, claims = {} } = {}) =>
    new jose.SignJWT({ ...(withEmail ? { email, groups } : { groups }), ...claims })
      .setProtectedHeader({ alg: 'ES256', kid }).setIssuer(issuer).setAudience(aud).setSubject(sub)
      .setIssuedAt().setExpirationTime(exp).sign(privateKey);
  // A token signed over hand-written JSON (e.g. a claim name repeated, which no encoder writes).
  const rawToken = async (headerText, payloadText) => {
    const input = `${Buffer.from(headerText).toString('base64url')}.${Buffer.from(payloadText).toString('base64url')}`;
    const sig = createSign('sha256').update(input).sign({ key: privateKey, dsaEncoding: 'ieee-p1363' });
    return `${input}.${sig.toString('base64url')}`;
  };
  return { file, issuer, audience, token, rawToken, flags: ['--jwks-file', file, '--oidc-issuer', issuer, '--admin-audience', audience] };
}

// A static scrape token for GET /metrics: the flag and the token.
export function metricsToken(dir) {
  const file = join(dir, 'metrics.token');
  const token = 'm'.repeat(20) + Math.random().toString(36).slice(2).padEnd(12, 'x');
  writeFileSync(file, token + '\n');
  chmodSync(file, 0o600);
  return { token, flags: ['--metrics-token-file', file] };
}

// Waits (up to 10 s) until a gateway's log matches `re`, then asserts it: the log reaches the
// test through a pipe (and pgwarden's logger thread), after the replies it explains.
export async function logMatch(gw, re) {
  for (let i = 0; i < 200 && !re.test(gw.log || ''); i++) await new Promise((r) => setTimeout(r, 50));
  if (!re.test(gw.log || '')) throw new Error(`the gateway log does not match ${re}:\n${gw.log}`);
}

// The admin API's port, from a gateway's log.
export const adminPort = (gw) => Number(/admin endpoint on 127\.0\.0\.1:(\d+)/.exec(gw.log)[1]);

// One admin API request: { status, text, json() }.
export async function adminCall(gw, method, path, { token, body, headers = {} } = {}) {
  const h = { ...headers };
  if (token) h.Authorization = `Bearer ${token}`;
  const r = await fetch(`http://127.0.0.1:${adminPort(gw)}${path}`, {
    method, headers: h, body: body === undefined ? undefined : (typeof body === 'string' ? body : JSON.stringify(body)),
  });
  const text = await r.text();
  return { status: r.status, text, json: () => JSON.parse(text) };
}
