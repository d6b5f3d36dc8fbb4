// Masking end to end: PII in result rows, COPY, errors and recordings, through real clients (psql,
// node pg in text and binary results, pipelined postgres.js) and a raw client that never
// describes; the exempt profile sees raw values; a reload changes masking for an open session;
// the segment files are grepped for every raw value.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync, chmodSync, rmSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import postgres from 'postgres';
import { env, withClient, startGateway, sleep, Wire, startupPacket, message, unnamedStatementAcross } from './lib.mjs';

let dir, gw;
const policyFile = () => join(dir, 'policy.json');
const POLICY = {
  masking: [
    { name: 'auditors', users: ['postgres'], exempt: true },
    { name: 'support', users: ['mask_support'],
      detectors: { card_number: 'partial', ssn: 'redact', email: 'redact', phone: 'partial', iban: 'partial' },
      custom: [{ name: 'employee', pattern: 'EMP-\\d{6}', action: 'redact' }] },
    { name: 'everyone',
      columns: [
        { column: 'ssn', table: 'public.mask_customers', action: 'partial' },
        { column: '*secret*', action: 'null' },
      ],
      detectors: { card_number: 'partial', ssn: 'redact', email: 'hash', phone: 'partial', iban: 'partial' },
      custom: [{ name: 'employee', pattern: 'EMP-\\d{6}', action: 'redact' }] },
  ],
};
// Raw values the client (and the recording) must never see unless exempt.
const RAW = {
  email: 'bob.raw@example.com',
  ssn: '219-09-9999',
  card: '4111 1111 1111 1111',
  cardDigits: '4111111111111111',
  phone: '+1 415 555 2671',
  iban: 'DE89370400440532013000',
  secret: 'hunter2-secret',
  emp: 'EMP-004211',
  email2: 'ann.raw@example.org',
};
const trusted = (port = gw.port, extra = {}) =>
  new pg.Client({ host: '127.0.0.1', port, user: 'trusted', database: 'postgres', ...extra });
const psql = (port, user, sql, extraEnv = {}) => new Promise((resolve) => execFile('psql',
  ['-X', '-h', '127.0.0.1', '-p', String(port), '-U', user, '-d', 'postgres', '-v', 'ON_ERROR_STOP=1', '-c', sql],
  { env: { ...process.env, ...extraEnv }, maxBuffer: 16 << 20 },
  (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stdout, stderr })));
// One statement inside BEGIN ... COMMIT (COPY TO under column rules needs a transaction block).
const psqlTx = (port, user, sql, opts = {}) => new Promise((resolve) => execFile('psql',
  ['-X', '-q', '-h', '127.0.0.1', '-p', String(port), '-U', user, '-d', 'postgres', '-v', 'ON_ERROR_STOP=1',
    '-c', 'BEGIN', '-c', sql, '-c', 'COMMIT'],
  { maxBuffer: 16 << 20, ...opts }, (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stdout, stderr })));
const noRaw = (text, what) => {
  for (const [k, v] of Object.entries(RAW)) assert.ok(!text.includes(v), `${what} shows raw ${k}: ${v}`);
};

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pgw-mask-'));
  const seal = join(dir, 'seal.key');
  const maskKey = join(dir, 'mask.key');
  writeFileSync(seal, 's'.repeat(40));
  writeFileSync(maskKey, 'm'.repeat(40));
  chmodSync(seal, 0o600);
  chmodSync(maskKey, 0o600);
  writeFileSync(policyFile(), JSON.stringify(POLICY));
  await withClient(env.pgPort, async (c) => {
    await c.query('DROP TABLE IF EXISTS mask_customers');
    await c.query(`CREATE TABLE mask_customers (id int PRIMARY KEY, name text, email text UNIQUE, ssn text,
      card text, card_num int8, phone text, iban text, profile json, tags text[], secret_code text, note text,
      created timestamptz DEFAULT now())`);
    // Inserted directly (not through the gateway): only results can carry the raw values there.
    await c.query(`INSERT INTO mask_customers VALUES
      (1, 'Bob', $1, $2, $3, $4::int8, $5, $6, $7::json, $8::text[], $9, $10),
      (2, 'Ann', $11, '078-05-1120', '5555-5555-5555-4444', 42, '(415) 555-2671', 'GB82 WEST 1234 5698 7654 32',
       '{"x": "no pii"}', '{plain}', 'x', 'order 1234 uuid 550e8400-e29b-41d4-a716-446655440000')`,
    [RAW.email, RAW.ssn, RAW.card, RAW.cardDigits, RAW.phone, RAW.iban,
      JSON.stringify({ email: RAW.email, card: RAW.card }), `{a,"${RAW.email}"}`, RAW.secret,
      `called by ${RAW.emp}`, RAW.email2]);
    await c.query('DROP ROLE IF EXISTS mask_support');
    await c.query("CREATE ROLE mask_support LOGIN PASSWORD 'support-pw'");
    await c.query('GRANT SELECT, INSERT ON mask_customers TO trusted, mask_support');
  });
  gw = await startGateway(['--upstream', `127.0.0.1:${env.pgPort}`, '--policy', policyFile(),
    '--mask-key-file', maskKey, '--record-dir', join(dir, 'rec'), '--record-key-file', seal,
    '--record-rows', '100', '--threads', '2']);
});

after(async () => {
  gw.kill('SIGINT');
  await gw.exited;
  rmSync(dir, { recursive: true, force: true });
});

test('psql: every PII value in every column is masked, type-aware', async () => {
  const r = await psql(gw.port, 'trusted', 'SELECT * FROM mask_customers ORDER BY id');
  assert.equal(r.code, 0, r.stderr);
  noRaw(r.stdout, 'psql');
  assert.match(r.stdout, /\*\*\*-\*\*-9999/); // the ssn column rule (partial)
  assert.match(r.stdout, /\*\*\*\* \*\*\*\* \*\*\*\* 1111/);
  assert.match(r.stdout, /email_[0-9a-f]{16}/);
  assert.match(r.stdout, /called by REDACTED/);
  assert.match(r.stdout, /550e8400-e29b-41d4-a716-446655440000/); // lookalikes pass
});

test('node pg (text, extended protocol): aliases, JSON, arrays, int8 and column rules', async () => {
  const c = trusted();
  await c.connect();
  try {
    const r = await c.query(
      'SELECT email, ssn AS s, lower(email) AS l, card, card_num, profile, tags, secret_code AS hidden, note FROM mask_customers WHERE id = $1', [1]);
    const row = r.rows[0];
    noRaw(JSON.stringify(r.rows), 'node pg');
    assert.match(row.email, /^email_[0-9a-f]{16}$/);
    assert.equal(row.l, row.email); // same value, same pseudonym: joins still work
    assert.equal(row.s, '***-**-9999'); // aliased, found through the catalog
    assert.equal(row.card, '**** **** **** 1111');
    assert.equal(row.card_num, null); // a card in an int8 column cannot be starred: NULL
    assert.equal(row.profile.card, '**** **** **** 1111'); // JSON still parses
    assert.equal(row.tags.length, 2); // the array still parses
    assert.equal(row.hidden, null); // *secret* column rule: null
    const clean = await c.query('SELECT id, name, created FROM mask_customers ORDER BY id');
    assert.deepEqual(clean.rows.map((x) => x.name), ['Bob', 'Ann']);
  } finally {
    await c.end();
  }
});

test('node pg with binary results: text masked, binary int8 card decoded and nulled', async () => {
  const c = trusted();
  await c.connect();
  try {
    const r = await c.query({ text: 'SELECT id, email, card, card_num, ssn FROM mask_customers ORDER BY id', binary: true });
    noRaw(JSON.stringify(r.rows), 'binary results');
    assert.equal(r.rows[0].id, 1);
    assert.match(r.rows[0].email, /^email_/);
    assert.equal(r.rows[0].card_num, null);
    assert.equal(String(r.rows[1].card_num), '42');
    assert.equal(r.rows[0].ssn, '***-**-9999');
  } finally {
    await c.end();
  }
});

test('postgres.js: pipelined prepared statements executed without a new Describe', async () => {
  const sql = postgres({ host: '127.0.0.1', port: gw.port, user: 'trusted', database: 'postgres', max: 1, prepare: true });
  try {
    for (let round = 0; round < 3; round++) {
      const [a, b, c] = await Promise.all([
        sql`SELECT email, ssn FROM mask_customers WHERE id = ${1}`,
        sql`SELECT id, phone, iban FROM mask_customers WHERE id = ${1}`,
        sql`SELECT note, card FROM mask_customers WHERE id = ${1}`,
      ]);
      noRaw(JSON.stringify([a, b, c]), `postgres.js round ${round}`);
      assert.equal(a[0].ssn, '***-**-9999');
      assert.equal(b[0].phone, '+* *** *** 2671');
      assert.equal(c[0].note, 'called by REDACTED');
    }
  } finally {
    await sql.end();
  }
});

// A SET of pgwarden.token is answered by pgwarden itself, before any stage sees it. Pipelined
// behind a COPY TO that pgwarden wraps in a block of its own, it used to be answered while that
// block was open: its ReadyForQuery said 'T', and the client believed itself in a transaction
// (found by attacker review). It now waits, as every message does, until the block is closed.
test('a token SET pipelined behind a wrapped COPY TO is answered outside pgwarden\'s block', async () => {
  const w = new Wire(gw.port);
  await w.connected();
  w.write(startupPacket({ user: 'trusted', database: 'postgres' }));
  assert.equal((await w.next(['Z', 'E'])).type, 'Z');
  w.messages = [];
  w.write(Buffer.concat([message('Q', Buffer.from('COPY mask_customers (id, ssn) TO STDOUT\0')),
    message('Q', Buffer.from("SET pgwarden.token = 'not-a-token'\0"))]));
  const status = [];
  for (let i = 0; i < 2; i++) status.push((await w.next(['Z'])).body.toString('latin1'));
  assert.deepEqual(status, ['I', 'I']);
  w.messages = [];
  w.write(message('Q', Buffer.from('SELECT now() = statement_timestamp() AS own\0')));
  assert.equal((await w.next(['D'])).body.toString('latin1', 6), 't'); // a transaction of its own
  assert.equal((await w.next(['Z'])).body.toString('latin1'), 'I');
  w.end();
});

test('a unique violation whose DETAIL carries an e-mail is masked', async () => {
  const c = trusted();
  await c.connect();
  try {
    await assert.rejects(c.query('INSERT INTO mask_customers (id, email) VALUES ($1, $2)', [50, RAW.email]),
      (e) => e.code === '23505' && !e.detail.includes(RAW.email) && /Key \(email\)=\(email_[0-9a-f]{16}\)/.test(e.detail));
    assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1); // the session goes on
  } finally {
    await c.end();
  }
});

test('COPY TO STDOUT: content detectors mask text and CSV; column rules mask it field by field', async () => {
  const pw = { PGPASSWORD: 'support-pw' };
  const text = await psql(gw.port, 'mask_support', '\\copy mask_customers(id, email, ssn, card, note, profile) to stdout', pw);
  assert.equal(text.code, 0, text.stderr);
  noRaw(text.stdout, 'COPY text');
  assert.match(text.stdout, /^1\tREDACTED\tREDACTED\t\*\*\*\* \*\*\*\* \*\*\*\* 1111\t/m);
  const csv = await psql(gw.port, 'mask_support', '\\copy (SELECT email, phone, iban FROM mask_customers ORDER BY id) to stdout csv', pw);
  assert.equal(csv.code, 0, csv.stderr);
  noRaw(csv.stdout, 'COPY csv');
  assert.equal(csv.stdout.trim().split('\n').length, 2);
  // Under column rules (profile "everyone": ssn partial, *secret* null) pgwarden describes the
  // COPY's columns upstream first, then masks each field as SELECT masks that column; the
  // detectors run over the result.
  const cols = 'id, ssn, secret_code, note';
  // Outside a transaction block pgwarden puts the describe and the COPY in a block of its own
  // (one transaction, the describe's locks held: no other session can change the columns in
  // between); the client still sees itself idle, and what it sends next runs outside any block.
  const auto = await new Promise((resolve) => execFile('psql', ['-X', '-q', '-h', '127.0.0.1', '-p', String(gw.port),
    '-U', 'trusted', '-d', 'postgres', '-v', 'ON_ERROR_STOP=1', '-c', 'COPY mask_customers (id, ssn) TO STDOUT',
    '-c', 'SELECT pg_current_xact_id_if_assigned() IS NULL AS fresh, now() = statement_timestamp() AS own_xact'],
  (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stdout, stderr })));
  assert.equal(auto.code, 0, auto.stderr);
  assert.deepEqual(auto.stdout.trim().split('\n').slice(0, 2).sort(), ['1\t***-**-9999', '2\t***-**-1120']);
  assert.match(auto.stdout, /^ t\s+\| t$/m); // the next statement ran in a transaction of its own
  // A COPY that fails gets its own error, not that of a failed block.
  const missing = await psql(gw.port, 'trusted', 'COPY mask_nope TO STDOUT');
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /relation "mask_nope" does not exist/);
  const ruled = await psqlTx(gw.port, 'trusted', `COPY (SELECT ${cols} FROM mask_customers ORDER BY id) TO STDOUT`);
  assert.equal(ruled.code, 0, ruled.stderr);
  noRaw(ruled.stdout, 'COPY text under column rules');
  assert.deepEqual(ruled.stdout.trim().split('\n').map((l) => l.split('\t').slice(0, 3)),
    [['1', '***-**-9999', '\\N'], ['2', '***-**-1120', '\\N']]);
  const table = await psqlTx(gw.port, 'trusted', 'COPY mask_customers (id, ssn, secret_code) TO STDOUT');
  assert.equal(table.code, 0, table.stderr);
  assert.deepEqual(table.stdout.trim().split('\n').sort(), ['1\t***-**-9999\t\\N', '2\t***-**-1120\t\\N']);
  const whole = await psqlTx(gw.port, 'trusted', 'COPY mask_customers TO STDOUT');
  assert.equal(whole.code, 0, whole.stderr);
  noRaw(whole.stdout, 'COPY of the whole table');
  const csvRuled = await psqlTx(gw.port, 'trusted', "COPY (SELECT id, lower(ssn) AS l, secret_code, note FROM mask_customers ORDER BY id) TO STDOUT (FORMAT csv, HEADER)");
  assert.equal(csvRuled.code, 0, csvRuled.stderr);
  noRaw(csvRuled.stdout, 'COPY csv under column rules');
  const lines = csvRuled.stdout.trim().split('\n');
  assert.equal(lines[0], 'id,l,secret_code,note'); // the header names the columns, untouched
  // lower(ssn) is computed from ssn: its rule (partial) applies, as it would in a SELECT.
  assert.match(lines[1], /^1,"\*\*\*-\*\*-9999",,called by REDACTED$/);
  const bin = await psqlTx(gw.port, 'trusted', 'COPY mask_customers (id, ssn, secret_code, email) TO STDOUT (FORMAT binary)',
    { encoding: 'latin1' });
  assert.equal(bin.code, 0, bin.stderr);
  noRaw(bin.stdout, 'COPY binary under column rules');
  assert.ok(bin.stdout.startsWith('PGCOPY\n\xff\r\n\0'));
  assert.ok(bin.stdout.includes('***-**-9999'));
  // HEADER is read as PostgreSQL reads it (case-insensitive): 'OFF' means no header row, so the
  // first row is data and masked.
  const off = await psqlTx(gw.port, 'trusted', "COPY mask_customers (id, ssn) TO STDOUT (HEADER 'OFF')");
  assert.equal(off.code, 0, off.stderr);
  noRaw(off.stdout, "HEADER 'OFF'");
  // What pgwarden cannot describe that way is refused with 42501; the session stays usable.
  const c = trusted();
  await c.connect();
  try {
    await c.query('BEGIN');
    await assert.rejects(c.query("COPY (SELECT E'\\\\x' || ssn FROM mask_customers) TO STDOUT"),
      (e) => e.code === '42501' && /cannot be masked by the column rules.*backslash/.test(e.message));
    await c.query('ROLLBACK');
    // A client encoding whose characters can hold an ASCII byte, set in the same pipeline just
    // before: the COPY waits until it is known, then is refused.
    await c.query('BEGIN');
    const [, copy] = await Promise.allSettled([c.query("SET client_encoding TO 'SJIS'"),
      c.query('COPY mask_customers (id, ssn) TO STDOUT')]);
    assert.equal(copy.status, 'rejected');
    assert.match(copy.reason.message, /client encoding SJIS/);
    await c.query('ROLLBACK');
    await c.query("SET client_encoding TO 'UTF8'");
    assert.equal((await c.query('SELECT 2 AS two')).rows[0].two, 2);
  } finally {
    await c.end();
  }
});

test('a raw client that never sends Describe: pgwarden describes the portal itself, rows are masked by it', async () => {
  const w = new Wire(gw.port);
  w.keepRows = true;
  await w.connected();
  w.write(startupPacket({ user: 'trusted', database: 'postgres' }));
  assert.equal((await w.next(['Z', 'E'])).type, 'Z');
  const cstr = (s) => Buffer.from(`${s}\0`);
  const i16 = (n) => { const b = Buffer.alloc(2); b.writeInt16BE(n); return b; };
  const i32 = (n) => { const b = Buffer.alloc(4); b.writeInt32BE(n); return b; };
  w.write(Buffer.concat([
    message('P', Buffer.concat([cstr(''), cstr('SELECT email, name, ssn FROM mask_customers WHERE id = 1'), i16(0)])),
    message('B', Buffer.concat([cstr(''), cstr(''), i16(0), i16(0), i16(0)])),
    message('E', Buffer.concat([cstr(''), i32(0)])),
    message('S')]));
  const seen = [];
  for (;;) {
    const m = await w.next(['1', '2', 'T', 'n', 'D', 'C', 'E', 'Z']);
    seen.push(m);
    if (m.type === 'Z') break;
  }
  // The client asked for no description and gets none: the gateway's own Describe stays hidden.
  assert.deepEqual(seen.map((m) => m.type), ['1', '2', 'D', 'C', 'Z']);
  const row = seen[2].body;
  const vals = [];
  for (let i = 0, p = 2; i < row.readInt16BE(0); i++) {
    const len = row.readInt32BE(p);
    vals.push(len < 0 ? null : row.toString('utf8', p + 4, p + 4 + len));
    p += 4 + Math.max(len, 0);
  }
  assert.match(vals[0], /^email_[0-9a-f]{16}$/); // hashed by the detector
  assert.equal(vals[1], 'Bob');                     // not PII: untouched
  assert.equal(vals[2], '***-**-9999');             // the column rule, by table and column
  w.end();
});

test('COPY TO with options that escape or quote values differently is refused under content detectors', async () => {
  const c = new pg.Client({ host: '127.0.0.1', port: gw.port, user: 'mask_support', password: 'support-pw', database: 'postgres' });
  await c.connect();
  for (const opts of ["DELIMITER '-'", "DELIMITER '@'", "FORMAT csv, QUOTE '9', FORCE_QUOTE *", "ESCAPE '!', FORMAT csv"]) {
    await assert.rejects(c.query(`COPY (SELECT ssn, email FROM mask_customers) TO STDOUT WITH (${opts})`),
      (e) => e.code === '42501' && /DELIMITER, QUOTE, ESCAPE or FORCE_QUOTE/.test(e.message), opts);
  }
  await c.end();
  // The default format is masked as before.
  const r = await psql(gw.port, 'mask_support', 'COPY (SELECT ssn, email FROM mask_customers ORDER BY id) TO STDOUT', { PGPASSWORD: 'support-pw' });
  assert.equal(r.code, 0, r.stderr);
  noRaw(r.stdout, 'default COPY output');
});

test('the exempt profile sees raw values, and its sessions say so in the recording', async () => {
  const other = await startGateway(['--upstream', `127.0.0.1:${env.pgPort}`, '--policy', policyFile(),
    '--record-dir', join(dir, 'rec-exempt'), '--record-key-file', join(dir, 'seal.key')]);
  try {
    await withClient(other.port, async (c) => {
      const r = await c.query('SELECT email, ssn FROM mask_customers WHERE id = 1');
      assert.equal(r.rows[0].email, RAW.email);
      assert.equal(r.rows[0].ssn, RAW.ssn);
    });
  } finally {
    other.kill('SIGINT');
    await other.exited;
  }
  const out = await new Promise((resolve) => execFile(env.bin,
    ['export', '--record-dir', join(dir, 'rec-exempt'), '--format', 'jsonl'], (e, so) => resolve(so)));
  const start = out.split('\n').filter(Boolean).map((l) => JSON.parse(l)).find((e) => e.type === 'session_start');
  assert.equal(start.masking, 'exempt (auditors)');
});

test('a reload changes masking for an open session', async () => {
  const c = trusted();
  await c.connect();
  try {
    assert.match((await c.query('SELECT email FROM mask_customers WHERE id = 1')).rows[0].email, /^email_/);
    const next = structuredClone(POLICY);
    next.masking[2].detectors.email = 'partial';
    writeFileSync(policyFile(), JSON.stringify(next));
    gw.kill('SIGHUP');
    let email;
    for (let i = 0; i < 50; i++) {
      email = (await c.query('SELECT email FROM mask_customers WHERE id = 1')).rows[0].email;
      if (email !== undefined && !email.startsWith('email_')) break;
      await sleep(100);
    }
    assert.equal(email, 'b***@example.com');
  } finally {
    writeFileSync(policyFile(), JSON.stringify(POLICY));
    gw.kill('SIGHUP');
    await c.end();
  }
});

// The catalog query a change of column rules makes due goes ahead of the client's next message
// as a batch of pgwarden's own: the unnamed statement of the client's earlier batch still binds
// (as a simple Query, it used to be replaced: 26000).
test('the catalog query a reload makes due leaves the unnamed statement of an earlier batch alone', async () => {
  const opts = { isolation: false };
  const expected = await unnamedStatementAcross(env.pgPort, async () => {}, opts);
  assert.deepEqual(expected, ['C', 'D:42', 'C', 'D:read committed', 'C', 'C']);
  try {
    const seen = await unnamedStatementAcross(gw.port, async () => {
      const next = structuredClone(POLICY);
      next.masking[2].columns.push({ column: 'note', table: 'public.mask_customers', action: 'null' });
      writeFileSync(policyFile(), JSON.stringify(next));
      gw.kill('SIGHUP');
      // Until the new rule is in force (its catalog query ran in a new session): the note is NULL.
      let note;
      for (let i = 0; i < 100 && note !== null; i++) {
        note = await withClient(gw.port, async (c) =>
          (await c.query('SELECT note FROM mask_customers WHERE id = 2')).rows[0].note, { user: 'trusted', password: undefined });
        if (note !== null) await sleep(100);
      }
      assert.equal(note, null);
      await sleep(500); // and picked up by every core
    }, opts);
    assert.deepEqual(seen, expected);
  } finally {
    writeFileSync(policyFile(), JSON.stringify(POLICY));
    gw.kill('SIGHUP');
    await sleep(700);
  }
});

test("a reload that drops the caller's profile during a COPY pgwarden wrapped still closes its block", async () => {
  const w = new Wire(gw.port);
  w.keepRows = true;
  await w.connected();
  w.write(startupPacket({ user: 'trusted', database: 'postgres' }));
  assert.equal((await w.next(['Z', 'E'])).type, 'Z');
  try {
    // Rows come after a second's sleep: the reload lands while the COPY runs in pgwarden's block.
    w.write(message('Q', Buffer.from('COPY (SELECT id, ssn, pg_sleep(0.5) FROM mask_customers ORDER BY id) TO STDOUT\0')));
    await sleep(300);
    writeFileSync(policyFile(), JSON.stringify({ masking: POLICY.masking.filter((m) => m.name !== 'everyone') }));
    gw.kill('SIGHUP');
    const z = await w.next(['Z'], 10000);
    assert.equal(z.body.toString('latin1'), 'I'); // idle, as without the block
    // The block was closed: the next statement runs in a transaction of its own.
    w.write(message('Q', Buffer.from('SELECT now() = statement_timestamp() AS own\0')));
    const row = await w.next(['D', 'E'], 10000);
    assert.equal(row.type, 'D');
    assert.equal(row.body.toString('latin1', 6), 't');
    assert.equal((await w.next(['Z'])).body.toString('latin1'), 'I');
  } finally {
    w.end();
    writeFileSync(policyFile(), JSON.stringify(POLICY));
    gw.kill('SIGHUP');
    await sleep(300);
  }
});

test('the recording holds no raw value; sessions are marked with their profile', async () => {
  // Rows (--record-rows), statements and parameters, errors: grep every segment file.
  await sleep(300); // batch durability flushes every few ms
  const recDir = join(dir, 'rec');
  let bytes = 0;
  for (const core of readdirSync(recDir)) {
    for (const f of readdirSync(join(recDir, core))) {
      const data = readFileSync(join(recDir, core, f));
      bytes += data.length;
      noRaw(data.toString('latin1'), `segment ${core}/${f}`);
    }
  }
  assert.ok(bytes > 4096, `recorded ${bytes} bytes`);
  const out = await new Promise((resolve) => execFile(env.bin,
    ['export', '--record-dir', recDir, '--format', 'jsonl'], { maxBuffer: 64 << 20 }, (e, so) => resolve(so)));
  const events = out.split('\n').filter(Boolean).map((l) => JSON.parse(l));
  assert.ok(events.some((e) => e.type === 'session_start' && e.masking === 'everyone'));
  assert.ok(events.some((e) => e.type === 'row' && JSON.stringify(e).includes('email_')));
  // The rejected INSERT's parameter was recorded masked, and so was the error.
  assert.ok(events.some((e) => e.type === 'outcome' && e.sqlstate === '23505'));
});
