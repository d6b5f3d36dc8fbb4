// Gateway lifecycle with its own pgwarden instances: unreachable upstream, timers, backpressure
// and graceful shutdown.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { spawn } from 'node:child_process';
import pg from 'pg';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { env, pgConfig, Wire, readySession, query, message, errorFields, startGateway, rssKiB, sleep } from './lib.mjs';

async function freePort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

async function stopGateway(gw) {
  gw.kill('SIGINT');
  gw.kill('SIGINT'); // second signal: no grace
  return gw.exited;
}

test('upstream unreachable: the client gets 08006 with a clear message', async () => {
  const gw = await startGateway(['--upstream', `127.0.0.1:${await freePort()}`]);
  try {
    const c = new pg.Client(pgConfig(gw.port));
    await assert.rejects(c.connect(), (e) => e.code === '08006' && /could not connect to the upstream server/.test(e.message));
  } finally {
    await stopGateway(gw);
  }
});

test('past --max-connections a login is refused with 53300, as PostgreSQL does; the others go on', async () => {
  const gw = await startGateway(['--upstream', `127.0.0.1:${env.pgPort}`, '--threads', '2', '--max-connections', '3']);
  const open = [];
  try {
    for (let i = 0; i < 3; i++) {
      const c = new pg.Client(pgConfig(gw.port));
      await c.connect();
      open.push(c);
    }
    for (let i = 0; i < 2; i++) {
      const extra = new pg.Client(pgConfig(gw.port));
      await assert.rejects(extra.connect(), (e) => e.code === '53300' && e.message === 'sorry, too many clients already');
    }
    for (const c of open) assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1);
    // A cancel request is no client connection: it still reaches the server.
    const slow = open[0].query('SELECT pg_sleep(30)');
    await sleep(200);
    const sock = net.connect(gw.port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    const req = Buffer.alloc(16);
    req.writeInt32BE(16, 0);
    req.writeInt32BE(80877102, 4);
    req.writeInt32BE(open[0].processID, 8);
    req.writeInt32BE(open[0].secretKey, 12);
    sock.end(req);
    await assert.rejects(slow, (e) => e.code === '57014');
    // One leaves: the next login is served.
    await open.pop().end();
    await sleep(100);
    const again = new pg.Client(pgConfig(gw.port));
    await again.connect();
    open.push(again);
    assert.equal((await again.query('SELECT 2 AS two')).rows[0].two, 2);
  } finally {
    for (const c of open) await c.end().catch(() => {});
    await stopGateway(gw);
  }
});

test('connect timeout: an upstream that never answers the handshake gets 08006 "timed out"', async () => {
  // A listener with a full backlog that never accepts: further SYNs are dropped, connect hangs.
  const port = await freePort();
  const blackhole = spawn('perl', ['-MSocket', '-e', `socket(S,PF_INET,SOCK_STREAM,0) or die; bind(S, pack_sockaddr_in(${port}, inet_aton("127.0.0.1"))) or die; listen(S,0) or die; print "ok\\n"; $|=1; sleep 60`], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((r) => blackhole.stdout.once('data', r));
  const fillers = [];
  for (let i = 0; i < 3; i++) {
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => {});
    fillers.push(s);
  }
  await sleep(300);
  const gw = await startGateway(['--upstream', `127.0.0.1:${port}`, '--connect-timeout', '1']);
  try {
    const c = new pg.Client(pgConfig(gw.port));
    const started = Date.now();
    await assert.rejects(c.connect(), (e) => e.code === '08006' && /timed out/.test(e.message));
    const took = Date.now() - started;
    assert.ok(took >= 900 && took < 5000, `took ${took} ms`);
  } finally {
    await stopGateway(gw);
    fillers.forEach((s) => s.destroy());
    blackhole.kill();
  }
});

test('startup timeout: a client that never sends a startup packet is closed with an error', async () => {
  const gw = await startGateway(['--upstream', `127.0.0.1:${env.pgPort}`, '--startup-timeout', '1']);
  try {
    const w = new Wire(gw.port);
    await w.connected();
    const e = await w.next(['E'], 4000);
    assert.ok(e);
    assert.match(errorFields(e.body).M, /startup did not complete/);
    assert.ok(await w.closedWithin(2000));
  } finally {
    await stopGateway(gw);
  }
});

test('idle timeout: an idle session is ended with 57P05, a busy one is not', async () => {
  const gw = await startGateway(['--upstream', `127.0.0.1:${env.pgPort}`, '--idle-timeout', '1']);
  try {
    const busy = new pg.Client(pgConfig(gw.port));
    busy.on('error', () => {});
    await busy.connect();
    const r = await busy.query('SELECT pg_sleep(1.6) AS slept'); // longer than the timeout, not idle
    assert.equal(r.rows.length, 1);
    await busy.end();
    const idle = new pg.Client(pgConfig(gw.port));
    const err = new Promise((resolve) => idle.on('error', resolve));
    await idle.connect();
    await idle.query('SELECT 1');
    const e = await Promise.race([err, sleep(4000).then(() => null)]);
    assert.ok(e, 'idle session was not ended');
    assert.equal(e.code, '57P05');
  } finally {
    await stopGateway(gw);
  }
});

test('backpressure: a client that stops reading does not make the gateway buffer the result', async () => {
  const gw = await startGateway(['--upstream', `127.0.0.1:${env.pgPort}`, '--threads', '1', '--max-buffered-bytes', '256K',
    '--recv-buffers', '256']); // a 4 MiB ring: what stays resident of it is no growth
  try {
    const w = await readySession(gw.port);
    w.keepRows = false;
    const before = rssKiB(gw.pid);
    w.sock.pause();
    const rows = 100000;
    w.write(query(`SELECT repeat('x', 1000) FROM generate_series(1, ${rows})`)); // ~100 MB
    await sleep(2500);
    const grown = rssKiB(gw.pid) - before;
    assert.ok(grown < 40 * 1024, `gateway grew by ${grown} KiB while the client was not reading`);
    // Nothing was lost: read it all now.
    w.sock.resume();
    const done = await w.next(['C'], 60000);
    assert.match(done.body.toString(), new RegExp(`SELECT ${rows}`));
    assert.equal(w.counts.D, rows, 'every row arrived');
    w.end();
  } finally {
    await stopGateway(gw);
  }
});

test('scratch memory: a large masked row answered before any Sync is not kept by each idle session', async () => {
  // Each session masks a 4 MiB row of emails (Parse, Bind, Execute, Flush: no ReadyForQuery
  // follows), then idles with its transaction open. The masking's scratch for it goes back once
  // the row is delivered: the next session reuses it, and twelve sessions hold what one held.
  const dir = mkdtempSync(join(tmpdir(), 'pgw-scratch-'));
  writeFileSync(join(dir, 'policy.json'),
    JSON.stringify({ masking: [{ name: 'm', detectors: { email: 'redact' } }] }));
  const gw = await startGateway(['--upstream', `127.0.0.1:${env.pgPort}`, '--threads', '1',
    '--recv-buffers', '256', '--policy', join(dir, 'policy.json')]); // a 4 MiB ring
  const z = (s) => Buffer.from(s + '\0');
  const i16 = (v) => { const b = Buffer.alloc(2); b.writeInt16BE(v); return b; };
  const i32 = (v) => { const b = Buffer.alloc(4); b.writeInt32BE(v); return b; };
  const sessions = [];
  const bigRow = async (w) => {
    w.write(Buffer.concat([
      message('P', Buffer.concat([z(''), z("SELECT repeat('bob@example.com ', 262144) AS v"), i16(0)])),
      message('B', Buffer.concat([z(''), z(''), i16(0), i16(0), i16(0)])),
      message('E', Buffer.concat([z(''), i32(0)])),
      message('H')]));
    const done = await w.next(['C', 'E'], 30000);
    assert.equal(done.type, 'C', JSON.stringify(done.type === 'E' && errorFields(done.body)));
    assert.equal(w.counts.D, 1);
  };
  try {
    for (let i = 0; i < 12; ++i) {
      const w = await readySession(gw.port);
      w.keepRows = false;
      sessions.push(w);
    }
    await bigRow(sessions[0]); // what masking a row this large needs once per core stays
    await sleep(300);
    const before = rssKiB(gw.pid);
    for (const w of sessions.slice(1)) await bigRow(w);
    await sleep(300);
    const grown = rssKiB(gw.pid) - before;
    // Kept by each session, eleven rows' scratch would be 20 MiB or more.
    assert.ok(grown < 10 * 1024, `gateway grew by ${grown} KiB with 11 more idle sessions`);
  } finally {
    for (const w of sessions) w.end();
    await stopGateway(gw);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('shutdown: SIGTERM stops accepting, ends sessions after the grace with 57P01, exits 0', async () => {
  const gw = await startGateway(['--upstream', `127.0.0.1:${env.pgPort}`, '--shutdown-grace', '1']);
  const c = new pg.Client(pgConfig(gw.port));
  await c.connect();
  const finishing = new pg.Client(pgConfig(gw.port));
  await finishing.connect();
  // Awaited from the start, so an early rejection is never an unhandled one.
  const slow = assert.rejects(c.query('SELECT pg_sleep(10)'), (e) => e.code === '57P01');
  const quick = finishing.query('SELECT pg_sleep(0.3) AS done'); // finishes inside the grace
  const errored = new Promise((resolve) => c.on('error', resolve));
  await sleep(200);
  const started = Date.now();
  gw.kill('SIGTERM');
  await sleep(200);
  const late = new pg.Client(pgConfig(gw.port));
  await assert.rejects(late.connect(), 'new connections must be refused while draining');
  assert.equal((await quick).rows.length, 1);
  await finishing.end();
  await slow;
  await errored.catch(() => {});
  const { code, signal } = await gw.exited;
  assert.equal(signal, null);
  assert.equal(code, 0);
  const took = Date.now() - started;
  assert.ok(took >= 900 && took < 8000, `shutdown took ${took} ms`);
});
