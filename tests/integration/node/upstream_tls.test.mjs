// pgwarden's own TLS to PostgreSQL (--upstream-tls, libpq's sslmode semantics), verified against a
// test CA; PostgreSQL reports the encryption itself in pg_stat_ssl.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, copyFileSync, chownSync, chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import pg from 'pg';
import { env, pgConfig, withClient, startGateway, makeCerts, sleep, logMatch } from './lib.mjs';

const pgDir = dirname(env.pgLog);
let dir, certs, otherCa;

async function setServerSsl(on) {
  await withClient(env.pgPort, async (c) => {
    if (on) {
      await c.query(`ALTER SYSTEM SET ssl_cert_file = '${join(pgDir, 'tls-server.pem')}'`);
      await c.query(`ALTER SYSTEM SET ssl_key_file = '${join(pgDir, 'tls-server.key')}'`);
      await c.query('ALTER SYSTEM SET ssl = on');
    } else {
      await c.query('ALTER SYSTEM RESET ssl');
    }
    await c.query('SELECT pg_reload_conf()');
  });
  await sleep(500);
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pgw-uptls-'));
  certs = makeCerts(dir, 'pgserver');
  const other = mkdtempSync(join(tmpdir(), 'pgw-uptls-other-'));
  otherCa = makeCerts(other, 'unrelated').ca;
  // The server's key must belong to the server's OS user and be private.
  for (const [src, name] of [[certs.cert, 'tls-server.pem'], [certs.key, 'tls-server.key']]) {
    copyFileSync(src, join(pgDir, name));
    if (process.getuid() === 0) {
      const uid = Number(execFileSync('id', ['-u', 'postgres']));
      const gid = Number(execFileSync('id', ['-g', 'postgres']));
      chownSync(join(pgDir, name), uid, gid);
    }
    chmodSync(join(pgDir, name), 0o600);
  }
  await setServerSsl(true);
});

after(async () => {
  await setServerSsl(false);
  rmSync(dir, { recursive: true, force: true });
});

async function throughGateway(args, fn) {
  const gw = await startGateway(['--upstream', `127.0.0.1:${env.pgPort}`, '--threads', '1', ...args]);
  try {
    return await fn(gw);
  } finally {
    gw.kill('SIGINT');
    gw.kill('SIGINT');
    await gw.exited;
  }
}

const upstreamSsl = (gw) => withClient(gw.port, async (c) =>
  (await c.query('SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()')).rows[0]);

test('verify-full with the right CA: the upstream leg is encrypted (pg_stat_ssl)', async () => {
  await throughGateway(['--upstream-tls', 'verify-full', '--upstream-tls-ca', certs.ca], async (gw) => {
    const row = await upstreamSsl(gw);
    assert.equal(row.ssl, true);
    assert.match(row.version, /^TLSv1\.[23]$/);
  });
});

test('gateway authentication: pgwarden sends a cleartext password upstream only inside TLS', async () => {
  // The test cluster's pg_hba asks plainuser for a cleartext password ("password" method).
  let verifier;
  await withClient(env.pgPort, async (c) => {
    await c.query('DROP ROLE IF EXISTS plainuser');
    await c.query("CREATE ROLE plainuser LOGIN PASSWORD 'plain-Over-Tls-5'");
    await c.query("SET password_encryption = 'scram-sha-256'");
    await c.query('DROP ROLE IF EXISTS tls_verifier_source');
    await c.query("CREATE ROLE tls_verifier_source PASSWORD 'static-Tls-6'");
    verifier = (await c.query("SELECT rolpassword FROM pg_authid WHERE rolname = 'tls_verifier_source'")).rows[0].rolpassword;
  });
  writeFileSync(join(dir, 'users'), `tlsstatic ${verifier} plaingroup\n`);
  writeFileSync(join(dir, 'policy.json'), JSON.stringify({ role_mappings: [{ group: 'plaingroup', role: 'plainuser', database: 'postgres' }] }));
  writeFileSync(join(dir, 'secrets'), 'plainuser plain-Over-Tls-5\n');
  chmodSync(join(dir, 'secrets'), 0o600);
  const auth = ['--policy', join(dir, 'policy.json'), '--upstream-secrets', join(dir, 'secrets'), '--users-file', join(dir, 'users')];
  const login = (gw) => withClient(gw.port, async (c) =>
    (await c.query('SELECT current_user AS u, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')).rows[0],
  { user: 'tlsstatic', password: 'static-Tls-6' });
  await throughGateway([...auth, '--upstream-tls', 'verify-full', '--upstream-tls-ca', certs.ca], async (gw) => {
    assert.deepEqual(await login(gw), { u: 'plainuser', ssl: true });
  });
  await throughGateway([...auth, '--upstream-tls', 'disable'], async (gw) => {
    await assert.rejects(login(gw), (e) => e.code === '28000' && /could not log in to the upstream/.test(e.message));
    await logMatch(gw, /cleartext over an unencrypted connection/);
  });
});

test('verify-full refuses an untrusted certificate and a wrong name, with 08006', async () => {
  await throughGateway(['--upstream-tls', 'verify-full', '--upstream-tls-ca', otherCa], async (gw) => {
    await assert.rejects(withClient(gw.port, async () => {}), (e) => e.code === '08006' && /certificate verify failed/.test(e.message));
  });
  await throughGateway(['--upstream-tls', 'verify-full', '--upstream-tls-ca', certs.ca, '--upstream-tls-name', 'db.other.example'],
    async (gw) => {
      await assert.rejects(withClient(gw.port, async () => {}), (e) => e.code === '08006' && /TLS/.test(e.message));
    });
  // verify-ca checks the chain only, so the wrong name is fine there.
  await throughGateway(['--upstream-tls', 'verify-ca', '--upstream-tls-ca', certs.ca, '--upstream-tls-name', 'db.other.example'],
    async (gw) => assert.equal((await upstreamSsl(gw)).ssl, true));
});

test('prefer (the default) encrypts when the server can; disable never does', async () => {
  await throughGateway([], async (gw) => assert.equal((await upstreamSsl(gw)).ssl, true));
  await throughGateway(['--upstream-tls', 'disable'], async (gw) => assert.equal((await upstreamSsl(gw)).ssl, false));
});

test('TLS on both legs: a large result arrives intact', async () => {
  const clientCerts = makeCerts(dir, 'front');
  await throughGateway(['--upstream-tls', 'verify-full', '--upstream-tls-ca', certs.ca, '--tls-cert', clientCerts.cert, '--tls-key', clientCerts.key],
    async (gw) => {
      const sql = "SELECT md5(string_agg(repeat(g::text, 40), ',')) AS h, count(*) AS n FROM generate_series(1, 100000) g";
      const direct = await withClient(env.pgPort, (c) => c.query(sql));
      const c = new pg.Client({ ...pgConfig(gw.port), ssl: { ca: readFileSync(clientCerts.ca), servername: 'localhost' } });
      await c.connect();
      const via = await c.query(sql);
      const rows = await c.query("SELECT g, repeat('y', 200) AS pad FROM generate_series(1, 30000) g");
      await c.end();
      assert.equal(via.rows[0].h, direct.rows[0].h);
      assert.equal(rows.rows.length, 30000);
    });
});

test('require against a server without TLS is refused with 08006', async () => {
  await setServerSsl(false);
  await throughGateway(['--upstream-tls', 'require'], async (gw) => {
    await assert.rejects(withClient(gw.port, async () => {}), (e) => e.code === '08006' && /does not support TLS/.test(e.message));
  });
  await throughGateway(['--upstream-tls', 'prefer'], async (gw) => assert.equal((await upstreamSsl(gw)).ssl, false));
  await setServerSsl(true);
});
