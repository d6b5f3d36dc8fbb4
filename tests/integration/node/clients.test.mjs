// Real clients through the gateway: notifications, cancels, pipelining, many connections.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import postgres from 'postgres';
import { env, pgConfig, withClient, sleep } from './lib.mjs';

test('authentication is relayed: a wrong password gets PostgreSQL\'s own 28P01', async () => {
  const c = new pg.Client(pgConfig(env.gwPort, { password: 'not-the-password' }));
  await assert.rejects(c.connect(), (e) => e.code === '28P01' && /password authentication failed/.test(e.message));
  await withClient(env.gwPort, async (ok) => assert.equal((await ok.query('SELECT current_user AS u')).rows[0].u, 'postgres'));
});

test('LISTEN/NOTIFY: a notification from another session is delivered through the gateway', async () => {
  const listener = new pg.Client(pgConfig(env.gwPort));
  await listener.connect();
  const got = new Promise((resolve) => listener.on('notification', resolve));
  await listener.query('LISTEN pgw_chan');
  await withClient(env.pgPort, (c) => c.query("NOTIFY pgw_chan, 'from-direct'"));
  const n = await Promise.race([got, sleep(5000).then(() => null)]);
  assert.ok(n, 'no notification within 5 s');
  assert.equal(n.channel, 'pgw_chan');
  assert.equal(n.payload, 'from-direct');
  await listener.end();
});

test('cancel through the gateway (postgres.js query.cancel) ends pg_sleep with 57014', async () => {
  // Several rounds: the cancel connection lands on either core, exercising cross-core routing.
  const sql = postgres({ ...pgConfig(env.gwPort), username: 'postgres', max: 1, onnotice: () => {} });
  try {
    for (let i = 0; i < 6; i++) {
      const q = sql`SELECT pg_sleep(30)`;
      q.execute();
      await sleep(200);
      const started = Date.now();
      q.cancel();
      await assert.rejects(q, (e) => e.code === '57014');
      assert.ok(Date.now() - started < 5000);
      const [{ ok }] = await sql`SELECT 1 AS ok`; // the session is usable afterwards
      assert.equal(ok, 1);
    }
  } finally {
    await sql.end();
  }
});

test('pipelined queries on one connection (postgres.js) all return in order', async () => {
  const sql = postgres({ ...pgConfig(env.gwPort), username: 'postgres', max: 1 });
  try {
    const results = await Promise.all(Array.from({ length: 500 }, (_, i) => sql`SELECT ${i}::int AS i, repeat('x', ${i}) AS s`));
    results.forEach(([row], i) => {
      assert.equal(row.i, i);
      assert.equal(row.s.length, i);
    });
  } finally {
    await sql.end();
  }
});

test('extended protocol with binary parameters and large values round-trips', async () => {
  await withClient(env.gwPort, async (c) => {
    const big = 'y'.repeat(900 * 1024); // spans many receive buffers both ways (limit here: 1 MiB)
    const r = await c.query('SELECT $1::text AS v, length($1::text) AS n, $2::bytea AS b', [big, Buffer.from([0, 1, 2, 255])]);
    assert.equal(r.rows[0].n, big.length);
    assert.equal(r.rows[0].v, big);
    assert.deepEqual([...r.rows[0].b], [0, 1, 2, 255]);
  });
});

test('500 concurrent connections each running queries', async () => {
  const N = 500;
  const clients = Array.from({ length: N }, () => new pg.Client(pgConfig(env.gwPort)));
  await Promise.all(clients.map((c) => c.connect()));
  const { rows } = await clients[0].query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'client backend'");
  assert.ok(rows[0].n >= N, `only ${rows[0].n} backends`);
  const sums = await Promise.all(
    clients.map(async (c, i) => {
      let s = 0;
      for (let k = 0; k < 3; k++) s += (await c.query('SELECT $1::int * 2 AS v', [i])).rows[0].v;
      return s;
    }),
  );
  sums.forEach((s, i) => assert.equal(s, 6 * i));
  await Promise.all(clients.map((c) => c.end()));
});
