// Client-side TLS: real clients verify pgwarden's certificate (verify-full), plaintext smuggled
// behind an SSLRequest is refused, and SIGHUP swaps the certificate without dropping sessions.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, copyFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { env, Wire, errorFields, startupPacket, startGateway, makeCerts, sleep, logMatch } from './lib.mjs';

let dir, gw, certs;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pgw-tls-'));
  certs = makeCerts(dir, 'first');
  copyFileSync(certs.cert, join(dir, 'live.pem'));
  copyFileSync(certs.key, join(dir, 'live.key'));
  gw = await startGateway(['--upstream', `127.0.0.1:${env.pgPort}`, '--tls-cert', join(dir, 'live.pem'), '--tls-key', join(dir, 'live.key')]);
});

after(async () => {
  gw.kill('SIGINT');
  gw.kill('SIGINT');
  await gw.exited;
  rmSync(dir, { recursive: true, force: true });
});

const tlsClient = () => new pg.Client({ host: '127.0.0.1', port: gw.port, user: 'postgres', password: env.password, database: 'postgres',
  ssl: { ca: readFileSync(certs.ca), servername: 'localhost', rejectUnauthorized: true } });

function psql(conninfo, sql) {
  return new Promise((resolve) => execFile('psql', ['-X', '-w', '-tA', conninfo, '-c', sql], { env: { ...process.env, PGPASSWORD: env.password } },
    (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stdout, stderr })));
}

test('psql with sslmode=verify-full connects through pgwarden over TLS 1.2+', async () => {
  const r = await psql(`host=localhost port=${gw.port} user=postgres dbname=postgres sslmode=verify-full sslrootcert=${certs.ca}`,
    "SELECT version, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
  assert.equal(r.code, 0, r.stderr);
  // pg_stat_ssl describes gateway-to-server; the client leg is proven by verify-full succeeding.
  assert.match(r.stdout, /\|f/);
  const info = await psql(`host=localhost port=${gw.port} user=postgres dbname=postgres sslmode=verify-full sslrootcert=${certs.ca}`, '\\conninfo');
  assert.match(info.stdout, /SSL connection \(protocol: TLSv1\.[23]/);
});

test('node pg over TLS: large values both ways are intact', async () => {
  const c = tlsClient();
  await c.connect();
  const big = 'z'.repeat(900 * 1024);
  const { rows } = await c.query('SELECT $1::text AS v, md5($1::text) AS h', [big]);
  assert.equal(rows[0].v, big);
  const many = await c.query('SELECT g, repeat(\'x\', 100) AS pad FROM generate_series(1, 50000) g');
  assert.equal(many.rows.length, 50000);
  assert.equal(many.rows[49999].g, 50000);
  await c.end();
});

test('plaintext clients still work on a TLS-enabled gateway (relay mode)', async () => {
  const plain = await psql(`host=127.0.0.1 port=${gw.port} user=postgres dbname=postgres sslmode=disable`, 'SELECT 1');
  assert.equal(plain.code, 0, plain.stderr);
});

test('unencrypted bytes pipelined behind an SSLRequest are refused with 08P01', async () => {
  const w = new Wire(gw.port);
  await w.connected();
  const ssl = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
  w.write(Buffer.concat([ssl, startupPacket({ user: 'postgres', database: 'postgres' })]));
  const e = await w.next(['E']);
  assert.ok(e);
  assert.equal(errorFields(e.body).C, '08P01');
  assert.match(errorFields(e.body).M, /unencrypted data after SSL request/);
  assert.ok(await w.closedWithin(3000));
});

function servedSerial() {
  return new Promise((resolve) => {
    const p = execFile('openssl', ['s_client', '-starttls', 'postgres', '-connect', `127.0.0.1:${gw.port}`, '-servername', 'localhost'],
      (err, stdout) => {
        const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(stdout);
        if (!pem) return resolve(null);
        const x = execFile('openssl', ['x509', '-noout', '-serial'], (e2, out2) => resolve(out2.trim()));
        x.stdin.end(pem[0]);
      });
    p.stdin.end();
  });
}

test('SIGHUP reloads the certificate for new sessions without dropping existing ones', async () => {
  const fileSerial = (f) => new Promise((r) => execFile('openssl', ['x509', '-noout', '-serial', '-in', f], (e, o) => r(o.trim())));
  assert.equal(await servedSerial(), await fileSerial(certs.cert));
  const survivor = tlsClient();
  await survivor.connect();
  const second = makeCerts(dir, 'second');
  copyFileSync(second.cert, join(dir, 'live.pem'));
  copyFileSync(second.key, join(dir, 'live.key'));
  gw.kill('SIGHUP');
  await sleep(300);
  assert.equal(await servedSerial(), await fileSerial(second.cert));
  assert.notEqual(await fileSerial(second.cert), await fileSerial(certs.cert));
  assert.equal((await survivor.query('SELECT 42 AS n')).rows[0].n, 42);
  await survivor.end();
  await logMatch(gw, /TLS certificate reloaded/);
});
