// Clients for tests/integration/pooling.sh (pgwarden -> PgBouncer in transaction mode ->
// PostgreSQL). Connection settings come from PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE.
//
//   node pooling_clients.mjs prepared CLIENTS SECONDS
//     CLIENTS connections run named prepared statements ({name, text, values}) for SECONDS;
//     prints one JSON line {ok, errors} (and the first error's message on a line of its own);
//     exits 1 unless every query succeeded.
//   node pooling_clients.mjs hold CLIENTS
//     opens CLIENTS connections and keeps them all open; prints "connected N"; then every one runs
//     a query at once (all waiting on the pool together); prints one JSON line {queried,
//     backend_pids, application_names} and "ready"; holds the connections until stdin closes.
import pg from 'pg';

const [mode, count, seconds] = process.argv.slice(2);
const n = Number(count);

async function connectAll(total, batch) {
  const clients = [];
  for (let i = 0; i < total; i += batch) {
    const k = Math.min(batch, total - i);
    const opened = await Promise.all(
      Array.from({ length: k }, async () => {
        const c = new pg.Client({ connectionTimeoutMillis: 30000 });
        c.on('error', () => {});  // a dropped connection fails its query, which is counted
        await c.connect();
        return c;
      }),
    );
    clients.push(...opened);
  }
  return clients;
}

async function prepared() {
  const clients = await connectAll(n, 50);
  const until = Date.now() + Number(seconds) * 1000;
  let ok = 0;
  let errors = 0;
  let firstError = null;
  const select = (aid) => ({
    name: 'pooling_select_balance',
    text: 'SELECT abalance, $1::int AS asked FROM pgbench_accounts WHERE aid = $1',
    values: [aid],
  });
  const update = (aid, delta) => ({
    name: 'pooling_update_balance',
    text: 'UPDATE pgbench_accounts SET abalance = abalance + $2 WHERE aid = $1',
    values: [aid, delta],
  });
  await Promise.all(
    clients.map(async (c) => {
      while (Date.now() < until) {
        const aid = 1 + Math.floor(Math.random() * 100000);
        try {
          const r = await c.query(select(aid));
          if (r.rows.length !== 1 || r.rows[0].asked !== aid) throw new Error(`wrong row for aid ${aid}`);
          const u = await c.query(update(aid, 1));
          if (u.rowCount !== 1) throw new Error(`update of aid ${aid} touched ${u.rowCount} rows`);
          ok += 2;
        } catch (e) {
          errors += 1;
          firstError ??= e.message;
          if (errors > 1000) break;
        }
      }
    }),
  );
  await Promise.all(clients.map((c) => c.end().catch(() => {})));
  console.log(JSON.stringify({ ok, errors }));
  if (firstError !== null) console.log(`first error: ${firstError}`);
  process.exit(errors === 0 && ok > 0 ? 0 : 1);
}

async function hold() {
  const clients = await connectAll(n, 100);
  console.log(`connected ${clients.length}`);
  // Every client asks at once: PgBouncer queues them and runs them on its pool.
  const rows = await Promise.all(
    clients.map(async (c) => {
      const r = await c.query(
        "SELECT pg_backend_pid() AS pid, current_setting('application_name') AS app FROM pg_sleep(0.01)",
      );
      return r.rows[0];
    }),
  );
  const pids = new Set(rows.map((r) => r.pid));
  const apps = new Set(rows.map((r) => r.app));
  console.log(JSON.stringify({ queried: rows.length, backend_pids: pids.size, application_names: [...apps] }));
  console.log('ready');
  process.stdin.resume();
  process.stdin.on('end', async () => {
    await Promise.all(clients.map((c) => c.end().catch(() => {})));
    process.exit(0);
  });
}

if (mode === 'prepared') await prepared();
else if (mode === 'hold') await hold();
else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
