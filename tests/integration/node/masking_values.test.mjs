// Masking of unusual values and names through pgwarden against a real PostgreSQL 15 (issue 14):
// column rules on quoted mixed-case names, `partial` on values that are not of their kind,
// card numbers glued to other characters, SSNs without separators after a keyword, and the
// lookalikes (hashes, UUIDs, ids) that must pass unchanged.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
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
