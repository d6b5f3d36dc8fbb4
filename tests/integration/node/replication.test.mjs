// Replication connections through pgwarden (issue 14). A replication connection streams the whole
// database raw — pg_basebackup copies every table unmasked and unjudged — so it is refused unless
// a policy rule names its caller with "replication": true; without a policy too. An allowed one
// is relayed as it is (BASE_BACKUP's archive, START_REPLICATION's COPY both ways) and each of its
// commands is in the recording, under the rule that allowed it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync, existsSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile, execFileSync } from 'node:child_process';
import { env, withClient, startGateway, Wire, errorFields } from './lib.mjs';

let dir, key;
const run = (cmd, args) => new Promise((resolve) => execFile(cmd, args, { maxBuffer: 64 << 20 },
  (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stdout, stderr })));
const conninfo = (port, extra = '') =>
  `host=127.0.0.1 port=${port} user=postgres dbname=postgres ${extra}`;
const basebackup = (port, out) => run('pg_basebackup',
  ['-d', conninfo(port), '-D', out, '-X', 'stream', '-c', 'fast', '--no-sync', '-w']);
const identify = (port, mode) => run('psql',
  ['-X', '-w', '-At', '-d', conninfo(port, `replication=${mode}`), '-c', 'IDENTIFY_SYSTEM']);
const policy = (name, rules) => {
  const p = join(dir, name);
  writeFileSync(p, JSON.stringify({ rules }));
  return p;
};
async function stop(gw) {
  gw.kill('SIGTERM');
  await gw.exited;
}
const refusedMessage = /replication connections are refused unless a policy rule allows them/;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'pgw-repl-'));
  key = join(dir, 'seal.key');
  writeFileSync(key, execFileSync('openssl', ['rand', '-hex', '32']));
  chmodSync(key, 0o600);
});
after(() => rmSync(dir, { recursive: true, force: true }));

test('replication connections are refused without a rule that allows them, with or without a policy', async () => {
  const direct = await identify(env.pgPort, 'true');
  assert.equal(direct.code, 0, direct.stderr); // the server itself would let the caller in
  const bare = await startGateway(['--upstream', `127.0.0.1:${env.pgPort}`]);
  const ruled = await startGateway(['--upstream', `127.0.0.1:${env.pgPort}`, '--policy',
    policy('readers.json', [{ name: 'readers', users: ['postgres'], read_only: true }])]);
  try {
    for (const [gw, because] of [[bare, /no rule applies/], [ruled, /rule "readers" does not/]]) {
      for (const mode of ['true', 'database', 'on', 'yes', '1']) {
        const r = await identify(gw.port, mode);
        assert.notEqual(r.code, 0, `replication=${mode} got through: ${r.stdout}`);
        assert.match(r.stderr, refusedMessage, mode);
        assert.match(r.stderr, because, mode);
      }
      const out = join(dir, `refused-${gw.port}`);
      const b = await basebackup(gw.port, out);
      assert.notEqual(b.code, 0, 'pg_basebackup copied the database through pgwarden');
      assert.match(b.stderr, refusedMessage);
      assert.ok(!existsSync(join(out, 'base')), 'no data files were written');
      // A repeated key (PostgreSQL takes the last one): refused whatever the values.
      const body = Buffer.from('user\0postgres\0database\0postgres\0replication\0false\0replication\0true\0\0');
      const head = Buffer.alloc(8);
      head.writeInt32BE(8 + body.length, 0);
      head.writeUInt32BE(196608, 4);
      const w = new Wire(gw.port);
      await w.connected();
      w.write(Buffer.concat([head, body]));
      const e = await w.next(['E', 'R', 'Z']);
      assert.equal(e.type, 'E');
      assert.match(errorFields(e.body).M, /"replication" is repeated/);
      w.end();
      // replication=false (or off) is an ordinary connection and works.
      const plain = await run('psql', ['-X', '-w', '-At', '-d', conninfo(gw.port, 'replication=false'), '-c', 'SELECT 7']);
      assert.equal(plain.stdout.trim(), '7', plain.stderr);
    }
  } finally {
    await stop(bare);
    await stop(ruled);
  }
});

test('a rule with "replication": true lets pg_basebackup through, raw, with its commands recorded', async () => {
  const rec = join(dir, 'rec');
  const gw = await startGateway(['--upstream', `127.0.0.1:${env.pgPort}`, '--record-dir', rec,
    '--record-key-file', key, '--policy', policy('backup.json', [
      { name: 'backup', users: ['postgres'], replication: true, read_only: true },
      { name: 'agents', users: ['trusted'] },
    ])]);
  let sid;
  try {
    await withClient(env.pgPort, (c) => c.query(
      "DROP TABLE IF EXISTS repl_marker; CREATE TABLE repl_marker (v text); INSERT INTO repl_marker VALUES ('copied-through-pgwarden')"));
    const out = join(dir, 'backup');
    const b = await basebackup(gw.port, out);
    assert.equal(b.code, 0, b.stderr + gw.log);
    // The copy is whole and valid: its manifest checks out, WAL included (streamed with COPY both ways).
    const bindir = process.env.PG_BIN || '/usr/lib/postgresql/15/bin';
    const v = await run(join(bindir, 'pg_verifybackup'), [out]);
    assert.equal(v.code, 0, v.stdout + v.stderr);
    assert.match(v.stdout, /successfully verified/);
    // A logical replication connection answers IDENTIFY_SYSTEM as the server does directly.
    const through = await identify(gw.port, 'database');
    const direct = await identify(env.pgPort, 'database');
    assert.equal(through.code, 0, through.stderr);
    assert.equal(through.stdout.split('|')[0], direct.stdout.split('|')[0]); // the same system id
    // The rule allows its own callers only: 'trusted' is still refused.
    const other = await run('psql', ['-X', '-w', '-At', '-d',
      `host=127.0.0.1 port=${gw.port} user=trusted dbname=postgres replication=true`, '-c', 'IDENTIFY_SYSTEM']);
    assert.notEqual(other.code, 0);
    assert.match(other.stderr, /rule "agents" does not/);
    // Ordinary sessions of the same caller are judged as before (read_only holds).
    await assert.rejects(withClient(gw.port, (c) => c.query('DELETE FROM repl_marker')), /statement denied by policy rule "backup"/);
  } finally {
    await stop(gw);
  }
  const exp = await run(env.bin, ['export', '--record-dir', rec, '--format', 'jsonl']);
  assert.equal(exp.code, 0, exp.stderr);
  const events = exp.stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
  const starts = events.filter((e) => e.type === 'session_start' && /replication connection allowed by rule "backup"/.test(e.masking ?? ''));
  assert.ok(starts.length >= 3, JSON.stringify(events.filter((e) => e.type === 'session_start'))); // backup, WAL stream, psql
  sid = new Set(starts.map((e) => e.session));
  const commands = events.filter((e) => e.type === 'query' && sid.has(e.session)).map((e) => e.text);
  assert.ok(commands.some((t) => /^BASE_BACKUP/.test(t)), commands.join('\n'));
  assert.ok(commands.some((t) => /^START_REPLICATION/.test(t)), commands.join('\n'));
  assert.ok(commands.includes('IDENTIFY_SYSTEM'), commands.join('\n'));
  const verified = await run(env.bin, ['verify', '--record-dir', rec, '--key-file', key]);
  assert.equal(verified.code, 0, verified.stdout + verified.stderr);
});
