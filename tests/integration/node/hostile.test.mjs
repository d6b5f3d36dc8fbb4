// Broken and hostile clients get a FATAL ErrorResponse with the right SQLSTATE and a clean close;
// nothing of theirs reaches PostgreSQL; other sessions keep working throughout.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { env, pgConfig, Wire, readySession, startupPacket, message, query, errorFields, sleep } from './lib.mjs';

// A well-behaved session querying in the background the whole time.
let bystander;
let bystanderQueries = 0;
let bystanderError = null;
let stop = false;
let loop;
let pgLogStart = 0;

before(async () => {
  pgLogStart = readFileSync(env.pgLog).length;
  bystander = new pg.Client(pgConfig(env.gwPort));
  await bystander.connect();
  loop = (async () => {
    while (!stop) {
      try {
        const r = await bystander.query('SELECT $1::int + 1 AS n', [bystanderQueries]);
        assert.equal(r.rows[0].n, bystanderQueries + 1);
        bystanderQueries++;
      } catch (e) {
        bystanderError = e;
        return;
      }
    }
  })();
});

after(async () => {
  stop = true;
  await loop;
  await bystander.end();
});

async function expectFatal(w, sqlstate, pattern) {
  const e = await w.next(['E']);
  assert.ok(e, 'expected an ErrorResponse before the close');
  const f = errorFields(e.body);
  assert.equal(f.V, 'FATAL');
  assert.equal(f.C, sqlstate, JSON.stringify(f));
  if (pattern) assert.match(f.M, pattern);
  assert.ok(await w.closedWithin(3000), 'gateway should close the connection');
}

// PostgreSQL only logs an impossible startup packet length and closes (ProcessStartupPacket's
// COMMERROR): no error is sent, and the gateway does not linger on such a client.
async function closedSilently(bytes) {
  const w = new Wire(env.gwPort);
  await w.connected();
  const started = Date.now();
  w.write(bytes);
  assert.ok(await w.closedWithin(1000), 'gateway should close the connection at once');
  assert.ok(Date.now() - started < 1000);
  assert.equal(w.messages.length, 0, 'nothing is answered to an impossible startup packet');
}

test('garbage instead of a startup packet is closed without an answer, as PostgreSQL does', () =>
  closedSilently(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')));

test('startup packet length below the minimum is closed without an answer', () =>
  closedSilently(Buffer.from([0, 0, 0, 4])));

test('a Terminate before startup (node pg ending early) is closed at once, without an answer', () =>
  closedSilently(Buffer.from([0x58, 0, 0, 0, 4])));

test('startup packet with a broken parameter list gets 08P01', async () => {
  const w = new Wire(env.gwPort);
  await w.connected();
  const p = startupPacket({ user: 'postgres' });
  p[p.length - 1] = 0x41; // drop the terminator
  w.write(p);
  await expectFatal(w, '08P01', /startup packet layout/);
});

test('startup packet without a user gets 28000', async () => {
  const w = new Wire(env.gwPort);
  await w.connected();
  w.write(startupPacket({ database: 'postgres' }));
  await expectFatal(w, '28000', /no PostgreSQL user name/);
});

test('unknown protocol version gets 0A000', async () => {
  for (const version of [2 << 16, 4 << 16]) {
    const w = new Wire(env.gwPort);
    await w.connected();
    w.write(startupPacket({ user: 'postgres' }, version));
    await expectFatal(w, '0A000', /unsupported frontend protocol/);
  }
});

test('SSLRequest and GSSENCRequest are answered N, then startup proceeds', async () => {
  const w = new Wire(env.gwPort);
  await w.connected();
  const ssl = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
  const gss = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30]);
  const answers = [];
  w.sock.removeAllListeners('data');
  await new Promise((resolve) => {
    w.sock.on('data', (d) => {
      answers.push(...d);
      if (answers.length >= 2) resolve();
    });
    w.write(ssl);
    setTimeout(() => w.write(gss), 50);
  });
  assert.deepEqual(answers.slice(0, 2), [0x4e, 0x4e]);
  w.end();
});

test('a newer minor version is relayed: PostgreSQL answers NegotiateProtocolVersion, session proceeds', async () => {
  const w = new Wire(env.gwPort);
  await w.connected();
  w.write(startupPacket({ user: 'trusted', database: 'postgres', '_pq_.future_option': 'on' }, (3 << 16) | 5));
  const v = await w.next(['v', 'E']);
  assert.equal(v?.type, 'v', 'expected NegotiateProtocolVersion');
  assert.equal(v.body.readInt32BE(0), 3 << 16); // newest minor the server supports: 3.0
  assert.equal(v.body.readInt32BE(4), 1); // one option it did not recognise
  assert.match(v.body.toString('latin1', 8), /_pq_\.future_option/);
  assert.ok(await w.next(['Z']));
  w.write(query('SELECT 7 * 6'));
  const row = await w.next(['D']);
  assert.match(row.body.toString(), /42/);
  w.end();
});

test('a message before startup completed gets 08P01 and is not forwarded', async () => {
  const w = new Wire(env.gwPort);
  await w.connected();
  // 'postgres' needs a password: the Query arrives while authentication has not even begun.
  w.write(Buffer.concat([startupPacket({ user: 'postgres', database: 'postgres' }), query('SELECT 1')]));
  await expectFatal(w, '08P01', /before startup completed/);
});

test('before authentication, messages are capped as PostgreSQL caps them (64 KiB), before the body arrives', async () => {
  const w = new Wire(env.gwPort);
  await w.connected();
  w.write(startupPacket({ user: 'postgres', database: 'postgres' }));
  assert.ok(await w.next(['R']), 'expected an authentication request');
  w.write(message('p', Buffer.alloc(16), 1 << 20)); // declares 1 MiB
  await expectFatal(w, '08P01', /length/);
});

test('a non-password message during authentication gets 08P01', async () => {
  const w = new Wire(env.gwPort);
  await w.connected();
  w.write(startupPacket({ user: 'postgres', database: 'postgres' }));
  const r = await w.next(['R']);
  assert.ok(r, 'expected an authentication request');
  w.write(query('SELECT 1'));
  await expectFatal(w, '08P01', /before startup completed/);
});

// A ready session sends one bad message; the gateway must answer FATAL 08P01 and close.
async function rejectsInReadySession(bytes, pattern) {
  const w = await readySession(env.gwPort);
  w.write(bytes);
  await expectFatal(w, '08P01', pattern);
}

test('message length below 4 gets 08P01', () => rejectsInReadySession(message('Q', Buffer.alloc(0), 3), /length/));

test('message length above --max-message-size gets 08P01 before the body arrives', () =>
  // header only; the limit here is 1 MiB
  rejectsInReadySession(message('Q', Buffer.alloc(0), 2 * 1024 * 1024), /length/));

test('negative (huge) message length gets 08P01', () => rejectsInReadySession(message('Q', Buffer.alloc(0), 0xfffffff0), /length/));

test('unknown frontend message type gets 08P01', () =>
  rejectsInReadySession(message('z', Buffer.from('hello')), /invalid frontend message type/));

test('valid messages before a malformed one in the same read are still answered', async () => {
  const w = await readySession(env.gwPort);
  w.write(Buffer.concat([query('SELECT 41 + 1'), message('Q', Buffer.alloc(0), 1)]));
  const row = await w.next(['D']);
  assert.ok(row);
  assert.match(row.body.toString(), /42/);
  await expectFatal(w, '08P01');
});

test('a CancelRequest with an unknown key is ignored and the connection closed', async () => {
  const running = new pg.Client(pgConfig(env.gwPort));
  await running.connect();
  const slow = running.query('SELECT pg_sleep(0.5) AS slept');
  for (const [pid, secret] of [[12345, 1], [0x7fffffff, -1], [3, 99]]) {
    const w = new Wire(env.gwPort);
    await w.connected();
    const c = Buffer.alloc(16);
    c.writeInt32BE(16, 0);
    c.writeUInt32BE((1234 << 16) | 5678, 4);
    c.writeInt32BE(pid, 8);
    c.writeInt32BE(secret, 12);
    w.write(c);
    assert.ok(await w.closedWithin(3000));
    assert.equal(w.messages.length, 0, 'no reply to a CancelRequest');
  }
  const r = await slow; // not cancelled
  assert.equal(r.rows.length, 1);
  await running.end();
});

test('other sessions were unaffected and PostgreSQL never saw the bad input', async () => {
  await sleep(200);
  assert.equal(bystanderError, null);
  assert.ok(bystanderQueries > 10, `bystander ran ${bystanderQueries} queries`);
  const log = readFileSync(env.pgLog, 'utf8').slice(pgLogStart);
  for (const s of ['invalid frontend message type', 'invalid length of startup packet', 'unsupported frontend protocol',
                   'invalid startup packet layout', 'expected password response', 'invalid message length']) {
    assert.ok(!log.includes(s), `PostgreSQL logged "${s}": it was forwarded`);
  }
});
