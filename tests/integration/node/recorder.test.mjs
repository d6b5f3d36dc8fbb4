// Recording end to end: sessions through a recording gateway are readable with the offline tools
// (sessions / replay / export / verify), tampering is caught, strict durability survives kill -9,
// and a full record filesystem makes the gateway refuse statements (58030) until space returns.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, chmodSync, rmSync, readFileSync, readdirSync, cpSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { env, withClient, startGateway, sleep, metricsToken, adminCall } from './lib.mjs';

let dir, key;

const tool = (...args) => new Promise((resolve) => execFile(env.bin, args, { maxBuffer: 64 << 20 },
  (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stdout, stderr })));
const jsonl = (text) => text.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
const trusted = (port) => new pg.Client({ host: '127.0.0.1', port, user: 'trusted', database: 'postgres' });
const psql = (port, args, extraEnv = {}) => new Promise((resolve) => execFile('psql',
  ['-X', '-w', '-h', '127.0.0.1', '-p', String(port), '-U', 'trusted', '-d', 'postgres', ...args],
  { env: { ...process.env, ...extraEnv } }, (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stdout, stderr })));
async function stop(gw) {
  gw.kill('SIGTERM');
  const { code } = await gw.exited;
  assert.equal(code, 0, gw.log);
}
// Polls for up to 10 s: the gateway's log arrives through a pipe, after the replies it explains.
const until = async (cond, what) => {
  for (let i = 0; i < 100 && !cond(); i++) await sleep(100);
  assert.ok(cond(), what);
};
const segments = (recDir) => readdirSync(recDir).flatMap((c) => readdirSync(join(recDir, c))
  .filter((f) => f.endsWith('.pwrec')).sort().map((f) => join(recDir, c, f)));

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pgw-rec-'));
  key = join(dir, 'seal.key');
  writeFileSync(key, execFileSync('openssl', ['rand', '-hex', '32']));
  chmodSync(key, 0o600);
  await withClient(env.pgPort, async (c) => {
    await c.query('DROP TABLE IF EXISTS rec_orders, strict_t, full_t');
    await c.query('CREATE TABLE rec_orders (id int PRIMARY KEY, note text)');
    await c.query('CREATE TABLE strict_t (client int, i int)');
    await c.query('CREATE TABLE full_t (i int, pad text)');
    await c.query('GRANT ALL ON rec_orders, strict_t, full_t TO trusted');
  });
});

after(() => rmSync(dir, { recursive: true, force: true }));

test('psql and pgbench sessions are listed, replayed and exported with every statement and outcome', async () => {
  const rec = join(dir, 'rec1');
  const gw = await startGateway(['--upstream', `127.0.0.1:${env.pgPort}`, '--record-dir', rec, '--record-key-file', key]);
  const script = [
    "INSERT INTO rec_orders VALUES (1, 'first'), (2, 'second');",
    'SELECT id, note FROM rec_orders ORDER BY id;',
    "UPDATE rec_orders SET note = 'changed' WHERE id = 2;",
    'SELECT 1/0;',
    'COPY rec_orders TO STDOUT;',
  ].join('\n');
  const r = await psql(gw.port, ['-c', script.split('\n')[0], '-c', script.split('\n')[1], '-c', script.split('\n')[2],
    '-c', script.split('\n')[3], '-c', script.split('\n')[4]]);
  assert.match(r.stderr, /division by zero/);
  writeFileSync(join(dir, 'bench.sql'), '\\set id random(1, 2)\nSELECT note FROM rec_orders WHERE id = :id;\n');
  const bench = spawnSync('pgbench', ['-n', '-h', '127.0.0.1', '-p', String(gw.port), '-U', 'trusted', '-M', 'extended',
    '-c', '2', '-t', '50', '-f', join(dir, 'bench.sql'), 'postgres'], { encoding: 'utf8' });
  assert.equal(bench.status, 0, bench.stderr);
  await stop(gw);

  const verified = await tool('verify', '--record-dir', rec, '--key-file', key);
  assert.equal(verified.code, 0, verified.stdout + verified.stderr);
  assert.match(verified.stdout, /^intact: \d+ segments, \d+ records/m);

  const listed = await tool('sessions', '--record-dir', rec, '--user', 'trusted', '--table', 'REC_ORDERS');
  assert.equal(listed.code, 0, listed.stderr);
  const rows = listed.stdout.trim().split('\n').slice(1);
  assert.equal(rows.length, 3, listed.stdout); // psql's session and pgbench's two clients
  assert.equal((await tool('sessions', '--record-dir', rec, '--user', 'nobody')).stdout.trim().split('\n').length, 1);
  assert.equal((await tool('sessions', '--record-dir', rec, '--table', 'no_such_table')).stdout.trim().split('\n').length, 1);
  const events = jsonl((await tool('export', '--record-dir', rec, '--format', 'jsonl')).stdout);
  const starts = events.filter((e) => e.type === 'session_start');
  assert.ok(starts.every((e) => e.identity === 'trusted' && /^127\.0\.0\.1:\d+$/.test(e.client) && e.database === 'postgres'));
  assert.ok(events.every((e) => /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/.test(e.ts) && /^[0-9a-f]{16}$/.test(e.session)));
  // psql: every statement with its outcome, in order, including the error and the COPY volume.
  const byText = (t) => events.find((e) => e.type === 'query' && e.text === t);
  const outcomeOf = (q) => events.find((e) => e.type === 'outcome' && e.session === q.session && e.statement_seq === q.statement_seq);
  const ins = byText(script.split('\n')[0]);
  assert.equal(outcomeOf(ins).command_tag, 'INSERT 0 2');
  assert.equal(outcomeOf(ins).rows, 2);
  assert.equal(outcomeOf(byText('SELECT id, note FROM rec_orders ORDER BY id;')).rows, 2);
  const err = outcomeOf(byText('SELECT 1/0;'));
  assert.equal(err.sqlstate, '22012');
  assert.match(err.message, /division by zero/);
  const copy = outcomeOf(byText('COPY rec_orders TO STDOUT;'));
  assert.equal(copy.direction, 'out');
  assert.equal(copy.bytes, '1\tfirst\n2\tchanged\n'.length);
  // pgbench (extended protocol): 100 Parse/Bind/Execute with bound parameters and 100 outcomes.
  const benchSessions = new Set(starts.filter((e) => e.application_name === 'pgbench').map((e) => e.session));
  assert.ok(benchSessions.size >= 2); // its two clients (and pgbench's own set-up connection)
  const binds = events.filter((e) => e.type === 'bind' && benchSessions.has(e.session));
  assert.equal(binds.length, 100);
  assert.ok(binds.every((b) => b.params.length === 1 && ['1', '2'].includes(b.params[0])), JSON.stringify(binds[0]));
  const outs = events.filter((e) => e.type === 'outcome' && benchSessions.has(e.session) && e.command_tag === 'SELECT 1');
  assert.equal(outs.length, 100);
  assert.equal(events.filter((e) => e.type === 'session_end').length, starts.length);

  // replay: the session as it happened, human-readable and as JSON lines.
  const sid = ins.session;
  const text = await tool('replay', '--record-dir', rec, '--session', sid);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /SESSION START identity=trusted/);
  assert.match(text.stdout, /QUERY +INSERT INTO rec_orders/);
  assert.match(text.stdout, /-> INSERT 0 2 \(2 rows/);
  assert.match(text.stdout, /SESSION END: client ended the session/);
  const lines = jsonl((await tool('replay', '--record-dir', rec, '--session', sid, '--format', 'jsonl')).stdout);
  assert.deepEqual(lines.map((e) => e.type), ['session_start', ...Array(5).fill(['query', 'outcome']).flat(), 'session_end']);
  assert.deepEqual(lines.filter((e) => e.type === 'query').map((e) => e.text), script.split('\n'));
  assert.equal((await tool('replay', '--record-dir', rec, '--session', '0123456789abcdef')).code, 1);
  // --since in the future selects nothing.
  assert.equal((await tool('export', '--record-dir', rec, '--format', 'jsonl', '--since', '2999-01-01T00:00:00Z')).stdout, '');

  // Tampering: one changed byte in a copy of the recording is found and named.
  const bad = join(dir, 'rec1-tampered');
  cpSync(rec, bad, { recursive: true });
  const seg = segments(bad).find((f) => readFileSync(f).includes('second'));
  const bytes = readFileSync(seg);
  bytes[bytes.indexOf('second')] = 'S'.charCodeAt(0);
  writeFileSync(seg, bytes);
  const caught = await tool('verify', '--record-dir', bad, '--key-file', key);
  assert.equal(caught.code, 1);
  assert.match(caught.stdout, /FAILED: core-\d\d\/\d{8}\.pwrec: record \d+ at offset \d+/);
});

test('--record-rows N records the first N rows of each result, text or binary, NULLs included', async () => {
  const rec = join(dir, 'rec-rows');
  const gw = await startGateway(['--upstream', `127.0.0.1:${env.pgPort}`, '--record-dir', rec, '--record-key-file', key, '--record-rows', '2']);
  const c = trusted(gw.port);
  await c.connect();
  await c.query("SELECT g, 'v' || g AS v, NULL AS n FROM generate_series(1, 5) g");
  await c.query({ text: 'SELECT $1::int4 AS i, 200000::int8 AS b', values: [7], binary: true });
  await c.end();
  await stop(gw);
  const events = jsonl((await tool('export', '--record-dir', rec, '--format', 'jsonl')).stdout);
  const rows = events.filter((e) => e.type === 'row');
  assert.equal(rows.length, 3);
  assert.deepEqual(rows[0].values, ['1', 'v1', null]);
  assert.deepEqual(rows[1].values, ['2', 'v2', null]);
  // Binary results are recorded as the client got them: the int4 7 and int8 200000, big-endian.
  assert.deepEqual(rows[2].values, ['\u0000\u0000\u0000\u0007', '\u0000\u0000\u0000\u0000\u0000\u0003\r@']);
  const first = events.find((e) => e.type === 'query' && /generate_series/.test(e.text));
  assert.ok(rows.slice(0, 2).every((r) => r.statement_seq === first.statement_seq && r.session === first.session));
  const replay = await tool('replay', '--record-dir', rec, '--session', first.session);
  assert.match(replay.stdout, /row: 1 \| v1 \| NULL/);
});

test('export --follow and replay --follow stream a live session; sessions filters by time', async () => {
  const rec = join(dir, 'rec-follow');
  const gw = await startGateway(['--upstream', `127.0.0.1:${env.pgPort}`, '--record-dir', rec, '--record-key-file', key]);
  const follower = spawn(env.bin, ['export', '--record-dir', rec, '--format', 'jsonl', '--follow']);
  let exported = '';
  follower.stdout.on('data', (d) => { exported += d; });
  const c = trusted(gw.port);
  await c.connect();
  await c.query("SELECT 'first live statement'");
  await until(() => exported.includes('first live statement'), 'export --follow shows the statement');
  const sid = jsonl(exported).find((e) => e.type === 'query').session;
  const replay = spawn(env.bin, ['replay', '--record-dir', rec, '--session', sid, '--follow']);
  let replayed = '';
  replay.stdout.on('data', (d) => { replayed += d; });
  const replayExit = new Promise((r) => replay.on('exit', (code) => r(code)));
  await c.query("SELECT 'second live statement'");
  await until(() => replayed.includes('second live statement'), 'replay --follow shows the next statement');
  await c.end();
  assert.equal(await replayExit, 0); // the session ended: replay --follow ends too
  assert.match(replayed, /first live statement[\s\S]*second live statement[\s\S]*SESSION END/);
  await until(() => exported.includes('"session_end"'), 'export --follow shows the end');
  follower.kill('SIGTERM');
  await stop(gw);
  const none = await tool('sessions', '--record-dir', rec, '--until', '2000-01-01');
  assert.equal(none.stdout.trim().split('\n').length, 1); // the header only
  const all = await tool('sessions', '--record-dir', rec, '--since', '2000-01-01T00:00:00Z', '--until', String(Math.floor(Date.now() / 1000) + 60));
  assert.equal(all.stdout.trim().split('\n').length, 2);
  const bad = await tool('sessions', '--record-dir', rec, '--since', 'yesterday');
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /expected a UTC time/);
});

test('strict durability: after kill -9, every statement a client saw succeed is in the recording', async () => {
  const rec = join(dir, 'rec-strict');
  const gw = await startGateway(['--upstream', `127.0.0.1:${env.pgPort}`, '--record-dir', rec, '--record-key-file', key,
    '--record-durability', 'strict']);
  const acked = [];
  let stopping = false;
  const clients = await Promise.all([0, 1, 2, 3].map(async (n) => {
    const c = trusted(gw.port);
    c.on('error', () => {});
    await c.connect();
    return c;
  }));
  const loops = clients.map(async (c, n) => {
    for (let i = 0; !stopping; i++) {
      const sql = `INSERT INTO strict_t VALUES (${n}, ${i})`;
      try {
        await c.query(sql);
        acked.push(sql);
      } catch {
        return;
      }
    }
  });
  await sleep(1500);
  gw.kill('SIGKILL');
  stopping = true;
  await Promise.all(loops);
  await gw.exited;
  assert.ok(acked.length > 50, `only ${acked.length} statements acknowledged`);
  // A restarted gateway seals what the crash left open, cutting off a partial record.
  const again = await startGateway(['--upstream', `127.0.0.1:${env.pgPort}`, '--record-dir', rec, '--record-key-file', key]);
  await stop(again);
  const v = await tool('verify', '--record-dir', rec, '--key-file', key);
  assert.equal(v.code, 0, v.stdout);
  const recorded = new Set(jsonl((await tool('export', '--record-dir', rec, '--format', 'jsonl')).stdout)
    .filter((e) => e.type === 'query').map((e) => e.text));
  const missing = acked.filter((s) => !recorded.has(s));
  assert.deepEqual(missing, [], `${missing.length} of ${acked.length} acknowledged statements missing`);
  console.log(`# strict: ${acked.length} acknowledged statements, all recorded`);
});

test('a full record filesystem: statements refused with 58030, nothing forwarded, service resumes when space returns', async (t) => {
  const mnt = join(dir, 'small-fs');
  mkdirSync(mnt);
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mnt], { encoding: 'utf8' });
  if (mounted.status !== 0) {
    t.skip(`cannot mount a small tmpfs here (${(mounted.stderr || '').trim()}); needs root with CAP_SYS_ADMIN`);
    return;
  }
  let gw;
  try {
    // Leave about 256 KiB free.
    spawnSync('dd', ['if=/dev/zero', `of=${join(mnt, 'filler')}`, 'bs=64k', 'count=60'], { encoding: 'utf8' });
    const scrape = metricsToken(dir);
    gw = await startGateway(['--upstream', `127.0.0.1:${env.pgPort}`, '--threads', '1', '--record-dir', join(mnt, 'rec'),
      '--record-key-file', key, '--record-durability', 'batch', '--admin-listen', '127.0.0.1:0', ...scrape.flags]);
    const adminGet = (path) => adminCall(gw, 'GET', path, { token: scrape.token });
    const c = trusted(gw.port);
    await c.connect();
    const pad = 'x'.repeat(8000);
    let ok = 0;
    let refused = null;
    for (let i = 0; i < 2000 && !refused; i++) {
      try {
        await c.query(`INSERT INTO full_t VALUES (${i}, '${pad}')`);
        ok++;
      } catch (e) {
        refused = e;
      }
    }
    assert.ok(refused, 'the gateway never refused a statement');
    assert.equal(refused.code, '58030');
    assert.match(refused.message, /cannot be recorded/);
    await until(() => /ALERT recording on core 0 failed/.test(gw.log), gw.log);
    // The alert is in the metrics and readiness too.
    assert.match((await adminGet('/metrics')).text, /^pgwarden_recording_failed\{core="0"\} 1$/m);
    assert.match((await adminGet('/metrics')).text, /^pgwarden_statements_refused_recording_total\{core="0"\} [1-9]/m);
    const notReady = await adminGet('/readyz');
    assert.equal(notReady.status, 503);
    assert.match(notReady.text, /recording failing on core 0/);
    // Nothing refused reached the database, and the session is still usable.
    await assert.rejects(c.query('SELECT 1'), (e) => e.code === '58030');
    const count = await withClient(env.pgPort, async (d) => Number((await d.query('SELECT count(*) AS n FROM full_t')).rows[0].n));
    assert.equal(count, ok);
    // Space returns: statements are accepted again.
    rmSync(join(mnt, 'filler'));
    let back = false;
    for (let i = 0; i < 40 && !back; i++) {
      await sleep(100);
      back = await c.query('SELECT 1').then(() => true, () => false);
    }
    assert.ok(back, 'service did not resume');
    await until(() => /works again/.test(gw.log), gw.log);
    assert.match((await adminGet('/metrics')).text, /^pgwarden_recording_failed\{core="0"\} 0$/m);
    assert.equal((await adminGet('/readyz')).status, 200);
    await c.end();
    await stop(gw);
    gw = null;
    const v = await tool('verify', '--record-dir', join(mnt, 'rec'), '--key-file', key);
    assert.equal(v.code, 0, v.stdout);
  } finally {
    if (gw) {
      gw.kill('SIGKILL');
      await gw.exited;
    }
    spawnSync('umount', [mnt]);
  }
});

test('guarantee 11: verify fails on a tail cut after a clean shutdown; a restart cuts a zero-filled tail and seals it', async () => {
  const rec = join(dir, 'rec-tail');
  let gw = await startGateway(['--upstream', `127.0.0.1:${env.pgPort}`, '--threads', '1', '--record-dir', rec,
    '--record-key-file', key, '--record-durability', 'none']);
  let c = trusted(gw.port);
  await c.connect();
  for (let i = 0; i < 20; i++) await c.query(`SELECT ${i} AS tail_probe`);
  await c.end();
  // While the gateway records, its newest segment is open, and verify says so.
  const live = await tool('verify', '--record-dir', rec, '--key-file', key);
  assert.equal(live.code, 0, live.stdout);
  assert.match(live.stdout + live.stderr, /not sealed yet/);
  await stop(gw);
  const clean = await tool('verify', '--record-dir', rec, '--key-file', key);
  assert.equal(clean.code, 0, clean.stdout);
  // The tail of the newest segment, its final seal included, cut off.
  const last = segments(rec).at(-1);
  const bytes = readFileSync(last);
  writeFileSync(last, bytes.subarray(0, bytes.length - 200));
  const cut = await tool('verify', '--record-dir', rec, '--key-file', key);
  assert.equal(cut.code, 1, cut.stdout);
  assert.match(cut.stdout + cut.stderr, /not sealed and no gateway is recording into it/);
  writeFileSync(last, bytes); // restored: intact again
  assert.equal((await tool('verify', '--record-dir', rec, '--key-file', key)).code, 0);
  // A crash in none mode: the file outgrew what reached the disk, the rest zeros.
  gw = await startGateway(['--upstream', `127.0.0.1:${env.pgPort}`, '--threads', '1', '--record-dir', rec,
    '--record-key-file', key, '--record-durability', 'none']);
  c = trusted(gw.port);
  await c.connect();
  for (let i = 0; i < 20; i++) await c.query(`SELECT ${i} AS zero_probe`);
  await c.end();
  await sleep(100);
  gw.kill('SIGKILL');
  await gw.exited;
  const newest = segments(rec).at(-1);
  writeFileSync(newest, Buffer.concat([readFileSync(newest), Buffer.alloc(8192)]));
  gw = await startGateway(['--upstream', `127.0.0.1:${env.pgPort}`, '--threads', '1', '--record-dir', rec,
    '--record-key-file', key]);
  await until(() => /sealed it/.test(gw.log), gw.log);
  await stop(gw);
  const after = await tool('verify', '--record-dir', rec, '--key-file', key);
  assert.equal(after.code, 0, after.stdout);
  const seals = jsonl((await tool('export', '--record-dir', rec, '--format', 'jsonl')).stdout);
  assert.ok(seals.length > 0);
  const raw = readFileSync(newest).toString('latin1');
  assert.match(raw, /zero-filled tail dropped/);
});


test('several instances: sessions, replay, export and verify read their directories together, ordered by time', async () => {
  const recA = join(dir, 'inst-a');
  const recB = join(dir, 'inst-b');
  const a = await startGateway(['--upstream', `127.0.0.1:${env.pgPort}`, '--record-dir', recA, '--record-key-file', key]);
  const b = await startGateway(['--upstream', `127.0.0.1:${env.pgPort}`, '--record-dir', recB, '--record-key-file', key]);
  // Statements alternate between the two gateways, each a little after the one before.
  const ca = trusted(a.port);
  const cb = trusted(b.port);
  await ca.connect();
  await cb.connect();
  for (let i = 0; i < 6; i++) {
    await (i % 2 === 0 ? ca : cb).query(`SELECT ${i} AS step_${i}`);
    await sleep(20);
  }
  await ca.end();
  await cb.end();
  await stop(a);
  await stop(b);

  const exp = await tool('export', '--record-dir', recA, '--record-dir', recB, '--format', 'jsonl');
  assert.equal(exp.code, 0, exp.stderr);
  const events = jsonl(exp.stdout);
  for (let i = 1; i < events.length; i++) assert.ok(events[i].ts >= events[i - 1].ts, `ordered by time at ${i}`);
  const steps = events.filter((e) => e.type === 'query' && /AS step_/.test(e.text));
  assert.deepEqual(steps.map((e) => e.text), [0, 1, 2, 3, 4, 5].map((i) => `SELECT ${i} AS step_${i}`));
  assert.deepEqual(steps.map((e) => e.instance), [recA, recB, recA, recB, recA, recB]);

  const sessions = await tool('sessions', '--record-dir', recA, '--record-dir', recB);
  assert.equal(sessions.code, 0, sessions.stderr);
  assert.match(sessions.stdout, new RegExp(`\\(${recA}\\)`));
  assert.match(sessions.stdout, new RegExp(`\\(${recB}\\)`));

  const sid = steps[1].session;
  const replay = await tool('replay', '--record-dir', recA, '--record-dir', recB, '--session', sid);
  assert.equal(replay.code, 0, replay.stderr);
  assert.match(replay.stdout, /SELECT 1 AS step_1/);
  assert.doesNotMatch(replay.stdout, /step_0/);

  const ok = await tool('verify', '--record-dir', recA, '--record-dir', recB, '--key-file', key);
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  assert.equal((ok.stdout.match(/: intact: /g) || []).length, 2, ok.stdout);
  // One key per directory, in order; any other count of keys is refused.
  assert.equal((await tool('verify', '--record-dir', recA, '--record-dir', recB, '--key-file', key, '--key-file', key)).code, 0);
  assert.equal((await tool('verify', '--record-dir', recA, '--record-dir', recB, '--key-file', key, '--key-file', key,
    '--key-file', key)).code, 2);
  // The same directory named twice (two spellings) is read once, as one instance.
  const single = jsonl((await tool('export', '--record-dir', recA, '--format', 'jsonl')).stdout);
  const twice = jsonl((await tool('export', '--record-dir', recA, '--record-dir', `${recA}/`, '--format', 'jsonl')).stdout);
  assert.equal(twice.length, single.length);
  assert.ok(twice.every((e) => e.instance === undefined));
  // --instance names one of the directories.
  assert.equal((await tool('replay', '--record-dir', recA, '--record-dir', recB, '--session', sid, '--instance', '/elsewhere')).code, 2);
  assert.equal((await tool('replay', '--record-dir', recA, '--record-dir', recB, '--session', sid, '--instance', recB)).code, 0);
  // One instance's recording altered: verify names that directory and fails.
  const seg = segments(recB)[0];
  const bytes = readFileSync(seg);
  const at = bytes.indexOf('step_3');
  assert.ok(at > 0);
  bytes[at] = 'S'.charCodeAt(0);
  writeFileSync(seg, bytes);
  const bad = await tool('verify', '--record-dir', recA, '--record-dir', recB, '--key-file', key);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stdout, new RegExp(`^${recA}: intact: `, 'm'));
  assert.match(bad.stdout, new RegExp(`^${recB}: FAILED: `, 'm'));
  assert.equal((await tool('export', '--record-dir', recA, '--record-dir', recB, '--follow')).code, 2, '--follow takes one directory');
});
