// Masking of unusual values and names through pgwarden against a real PostgreSQL 15 (issue 14):
// column rules on quoted mixed-case names, `partial` on values that are not of their kind,
// card numbers glued to other characters, SSNs without separators after a keyword, and the
// lookalikes (hashes, UUIDs, ids) that must pass unchanged.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { env, withClient, startGateway } from './lib.mjs';

let dir, gw;
const POLICY = {
  masking: [{ name: 'everyone',
    columns: [{ column: 'email', action: 'hash' }, { column: 'ssn', table: 'public.mask_people', action: 'partial' }],
    detectors: { card_number: 'partial', ssn: 'redact', email: 'hash' } }],
};
const direct = (sql) => withClient(env.pgPort, (c) => c.query(sql));
const viaGateway = (sql) => withClient(gw.port, (c) => c.query(sql), { user: 'trusted', password: undefined });

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pgw-maskv-'));
  writeFileSync(join(dir, 'policy.json'), JSON.stringify(POLICY));
  await direct('DROP TABLE IF EXISTS "Mask_People"');
  await direct('CREATE TABLE "Mask_People" (id int, "Email" text, "SSN" text, note text)');
  await direct(`INSERT INTO "Mask_People" VALUES
    (1, 'carol@example.net', '123-45-6789', 'paid with card4111111111111111, SSN: 078051120'),
    (2, 'N/A', 'N/A', 'qty 2 4111 1111 1111 1111'),
    (3, 'TBD', 'TBD', '{"ssn": "219099999", "pan": "x5555555555554444y"}'),
    (4, '', '12-34', 'sha d41d8cd98f00b204e9800998ecf8427e id 550e8400e29b41d4a716446655440000'),
    (5, 'x', '', 'order 123456789 at 20261201123045')`);
  await direct('GRANT SELECT ON "Mask_People" TO trusted');
  gw = await startGateway(['--upstream', `127.0.0.1:${env.pgPort}`, '--policy', join(dir, 'policy.json')]);
});

after(async () => {
  gw.kill('SIGINT');
  await gw.exited;
  rmSync(dir, { recursive: true, force: true });
  await direct('DROP TABLE IF EXISTS "Mask_People"');
});

test('column rules match quoted mixed-case names; partial hides whole what is not of its kind', async () => {
  const { rows } = await viaGateway('SELECT * FROM "Mask_People" ORDER BY id');
  const raw = (await direct('SELECT * FROM "Mask_People" ORDER BY id')).rows;
  assert.equal(rows.length, 5);
  // "Email" under the unqualified rule "email": hashed, every value (placeholders too).
  for (const [i, r] of rows.entries()) {
    assert.notEqual(r.Email, raw[i].Email, `row ${r.id}: "Email" went out raw`);
    assert.match(r.Email, /^pii_[0-9a-f]{16}$/);
  }
  // "SSN" of table "Mask_People" under the qualified rule public.mask_people: partial where it
  // is an SSN, hidden whole where it is not.
  assert.deepEqual(rows.map((r) => r.SSN), ['***-**-6789', 'REDACTED', 'REDACTED', 'REDACTED', 'REDACTED']);
});

test('card numbers glued to other characters and SSNs after a keyword are found; lookalikes pass', async () => {
  const { rows } = await viaGateway('SELECT id, note FROM "Mask_People" ORDER BY id');
  const notes = rows.map((r) => r.note);
  for (const secret of ['4111111111111111', '4111 1111 1111 1111', '078051120', '219099999', '5555555555554444']) {
    assert.ok(!notes.some((n) => n.includes(secret)), `${secret} went out raw: ${JSON.stringify(notes)}`);
  }
  assert.match(notes[0], /card\*{12}1111, SSN: REDACTED$/);
  assert.equal(notes[1], 'qty 2 **** **** **** 1111');
  // Hashes, UUIDs without dashes, nine-digit ids without a keyword and timestamps are not PII.
  assert.equal(notes[3], 'sha d41d8cd98f00b204e9800998ecf8427e id 550e8400e29b41d4a716446655440000');
  assert.equal(notes[4], 'order 123456789 at 20261201123045');
});

test('values of any length are scanned whole: findings across receive-buffer boundaries are found', async () => {
  // The gateway receives in 16 KiB buffers (and its client reads in its own chunks): place a card
  // number and an e-mail across each boundary a large value can cross, in text, JSON and COPY.
  const CARD = '4111111111111111';
  const SSN = '123-45-6789';
  const valueWith = (size) => {
    const chars = Buffer.alloc(size, 'x');
    for (const edge of [16384, 65536, 1 << 20, 2 << 20]) {
      if (edge + 16 < size) chars.write(` ${CARD} `, edge - 9);
      if (edge + 1000 < size) chars.write(` ${SSN} `, edge + 500 - 6);
    }
    return chars.toString();
  };
  const big = valueWith((3 << 20) + 123);
  await direct('DROP TABLE IF EXISTS mask_big');
  await direct('CREATE TABLE mask_big (id int, t text, j jsonb)');
  await withClient(env.pgPort, (c) => c.query('INSERT INTO mask_big VALUES (1, $1, $2)', [big, JSON.stringify({ note: big.slice(0, 70000) })]));
  await direct('GRANT SELECT ON mask_big TO trusted');
  try {
    const { rows } = await viaGateway('SELECT t, j::text AS j FROM mask_big');
    for (const [what, v] of [['text', rows[0].t], ['json', rows[0].j]]) {
      assert.ok(!v.includes(CARD), `${what}: a card number crossing a boundary went out raw`);
      assert.ok(!v.includes(SSN), `${what}: an SSN crossing a boundary went out raw`);
    }
    assert.equal(rows[0].t.split(`${'*'.repeat(12)}1111`).length - 1, 4, 'each of the 4 card numbers was masked in place');
    assert.equal(rows[0].t.split('REDACTED').length - 1, 4, 'each of the 4 SSNs was masked in place');
    // COPY TO STDOUT (text, CSV): the same value in one CopyData, through a gateway whose profile
    // has detectors only (COPY under column rules is refused).
    const detectorsOnly = join(dir, 'detectors.json');
    writeFileSync(detectorsOnly, JSON.stringify({ masking: [{ name: 'd', detectors: POLICY.masking[0].detectors }] }));
    const g2 = await startGateway(['--upstream', `127.0.0.1:${env.pgPort}`, '--policy', detectorsOnly]);
    try {
      for (const format of ['text', 'csv']) {
        const copied = await new Promise((resolve, reject) => {
          execFile('psql', ['-X', '-h', '127.0.0.1', '-p', String(g2.port), '-U', 'trusted', '-d', 'postgres', '-c',
            `COPY (SELECT t FROM mask_big) TO STDOUT WITH (FORMAT ${format})`], { maxBuffer: 64 << 20 },
          (err, stdout, stderr) => (err ? reject(new Error(stderr)) : resolve(stdout)));
        });
        assert.ok(copied.length > big.length - 100, `COPY ${format} output too short: ${copied.length}`);
        assert.ok(!copied.includes(CARD) && !copied.includes(SSN), `COPY ${format}: a finding crossing a boundary went out raw`);
      }
    } finally {
      g2.kill('SIGINT');
      await g2.exited;
    }
  } finally {
    await direct('DROP TABLE IF EXISTS mask_big');
  }
});
