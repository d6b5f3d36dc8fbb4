// The differential protocol fuzzer: random frontend sequences (simple and extended messages,
// named and unnamed statements and portals, Describe, Close, Flush, Sync, FunctionCall, COPY in,
// errors mid-pipeline, SQL PREPARE / DECLARE / DEALLOCATE, settings changes, transactions,
// notifications) sent in pipelined chunks to PostgreSQL directly and through pgwarden (policy,
// masking and recording on). After every chunk it checks that the two replied alike (modulo what
// pgwarden is meant to change: masked values, refusals), that no denied statement took effect,
// and that no raw fixture value reached the client; at the end, that the model never diverged and
// that the recording holds no raw value and the outcomes the client saw, in order.
// Usage: node differential_fuzz.mjs --seconds N [--seed S]   (env: PGW_PORT, PG_PORT, PGW_ADMIN,
// PGW_REC_DIR, PGW_BIN, PGPASSWORD). Prints "fuzz: N chunks ... failures F"; exits 1 on a failure,
// with the seed and the chunk that broke it.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import pg from 'pg';
import { Wire, startupPacket, message, query, errorFields } from './lib.mjs';

const args = process.argv.slice(2);
const opt = (name, dflt) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : dflt; };
const seconds = Number(opt('--seconds', '60'));
let seed = Number(opt('--seed', String(Date.now() % 1e9)));
const gwPort = Number(process.env.PGW_PORT);
const pgPort = Number(process.env.PG_PORT);

// A small deterministic PRNG (mulberry32), so a failing seed replays.
let state = seed >>> 0;
const rnd = () => {
  state = (state + 0x6d2b79f5) >>> 0;
  let t = state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const pick = (a) => a[Math.floor(rnd() * a.length)];
const chance = (p) => rnd() < p;

// Fixture values that must never reach the client or the recording raw.
export const RAW = ['219-09-9999', 'carol.raw@example.net', '4111 1111 1111 1111', '078-05-1120', 'dave.raw@example.org'];

// Statements. `deny`: the fuzz policy refuses them (the generator knows which).
const READS = [
  'SELECT id, name FROM fz_people ORDER BY id', 'SELECT ssn, email FROM fz_people ORDER BY id',
  'SELECT name AS n, ssn AS s, card FROM fz_people ORDER BY id', "SELECT email || ' x' AS e FROM fz_people",
  'SELECT * FROM fz_work ORDER BY id', 'SELECT g, $$x$$ || g FROM generate_series(1, 12) g',
  'SELECT count(*) FROM fz_canary', 'SELECT 1/(id - id) FROM fz_people', 'SELECT 1/0', '',
  "SELECT 'a\\b' AS backslash", "SELECT E'tab\\there' AS esc", 'SELECT current_setting($$standard_conforming_strings$$)',
];
const WRITES = () => [`INSERT INTO fz_work VALUES (${Math.floor(rnd() * 1000)}, 'w')`,
  `UPDATE fz_work SET v = 'u' WHERE id = ${Math.floor(rnd() * 1000)}`];
const DENIED = ['DELETE FROM fz_canary', 'TRUNCATE fz_canary', 'DROP TABLE fz_canary',
  'UPDATE fz_canary SET id = id', 'DELETE FROM fz_canary WHERE true',
  "SELECT '\\' , $$ ' ; DROP TABLE fz_canary; -- $$"];
// COPY TO under the column rules: described ahead by pgwarden and masked field by field (one per
// chunk, outside an open extended batch: otherwise pgwarden refuses it, as README says).
const COPIES = ['COPY fz_people (email) TO STDOUT', 'COPY fz_people (id, ssn, email, name) TO STDOUT',
  'COPY (SELECT ssn, lower(email) AS e FROM fz_people ORDER BY id) TO STDOUT (FORMAT csv, HEADER)',
  'COPY fz_people TO STDOUT (FORMAT binary)', "COPY (SELECT ssn || '!' FROM fz_people) TO STDOUT"];
const SESSION = ['BEGIN', 'COMMIT', 'ROLLBACK', 'SET standard_conforming_strings = off',
  'SET standard_conforming_strings = on', 'SET client_min_messages = notice', 'SAVEPOINT sp', 'RESET ALL',
  'PREPARE fzp AS SELECT ssn, email FROM fz_people', 'EXECUTE fzp', 'DEALLOCATE fzp', 'DEALLOCATE ALL',
  'DECLARE fzc CURSOR WITH HOLD FOR SELECT ssn, email, name FROM fz_people', 'FETCH 1 FROM fzc', 'CLOSE fzc',
  'LISTEN fz_chan', "NOTIFY fz_chan, 'mail carol.raw@example.net'", "SELECT 1; SELECT ssn FROM fz_people",
  "INSERT INTO fz_work VALUES (1, 'a'); SELECT 1/0; INSERT INTO fz_work VALUES (2, 'b')"];

// Extended-protocol message builders.
const cstr = (s) => Buffer.from(`${s}\0`);
const i16 = (n) => { const b = Buffer.alloc(2); b.writeInt16BE(n); return b; };
const i32 = (n) => { const b = Buffer.alloc(4); b.writeInt32BE(n); return b; };
const Parse = (name, sql) => message('P', Buffer.concat([cstr(name), cstr(sql), i16(0)]));
const Bind = (portal, stmt, fmt, params = []) => message('B', Buffer.concat([cstr(portal), cstr(stmt), i16(0),
  i16(params.length), ...params.map((p) => Buffer.concat([i32(Buffer.byteLength(p)), Buffer.from(p)])),
  ...(fmt === null ? [i16(0)] : [i16(1), i16(fmt)])]));
const Describe = (kind, name) => message('D', Buffer.concat([Buffer.from(kind), cstr(name)]));
const Execute = (portal, rows) => message('E', Buffer.concat([cstr(portal), i32(rows)]));
const Close = (kind, name) => message('C', Buffer.concat([Buffer.from(kind), cstr(name)]));
const Sync = () => message('S');
const Flush = () => message('H');
const FunctionCall = (oid) => message('F', Buffer.concat([i32(oid), i16(0), i16(0), i16(0)]));

// One chunk: the messages, as sent through the gateway and (with refusals made equivalent) directly.
// Whether the unnamed statement's last Parse was refused: pgwarden then refuses binding it too.
let unnamedRefused = false;

function chunk() {
  unnamedRefused = false; // the previous chunk's marker Query replaced the unnamed statement
  const gw = [];
  const direct = [];
  let localRefusals = 0;
  let batchOpen = false;
  let copied = false;
  const both = (m) => { gw.push(m); direct.push(m); };
  const n = 1 + Math.floor(rnd() * 8);
  for (let i = 0; i < n; i++) {
    const r = rnd();
    if (r < 0.25) {
      // A simple Query.
      const denied = chance(0.15);
      const copy = !denied && !batchOpen && !copied && chance(0.15);
      copied = copied || copy;
      if (copy) {
        // Alone (pgwarden opens a block of its own around it) or inside the client's block.
        for (const q of chance(0.5) ? [pick(COPIES)] : ['BEGIN', pick(COPIES), 'COMMIT']) both(query(q));
        unnamedRefused = false;
        continue;
      }
      const sql = denied ? pick(DENIED) : chance(0.5) ? pick(READS) : chance(0.5) ? pick(SESSION) : pick(WRITES());
      if (denied) {
        gw.push(query(sql));
        localRefusals++; // answered by pgwarden; the server never sees it
        continue;
      }
      both(query(sql));
      unnamedRefused = false; // a simple Query replaces the unnamed statement
    } else if (r < 0.75) {
      // An extended-protocol round: Parse, Bind, maybe Describe, Execute (maybe twice), maybe Close.
      batchOpen = true;
      const name = pick(['', '', 's1', 's2']);
      const portal = pick(['', '', 'p1']);
      const denied = chance(0.12);
      const text = denied ? pick(DENIED.filter((d) => !d.startsWith('COPY'))) : chance(0.8) ? pick(READS) : pick(WRITES());
      const parse = denied || chance(0.8);
      if (parse) {
        const named = denied ? '' : name; // refused statements only unnamed: a name keeps its old meaning
        gw.push(Parse(named, text));
        // pgwarden's stand-in for a refused Parse is a Parse that fails: the same, directly.
        direct.push(denied ? Parse(named, 'pgwarden refused') : Parse(named, text));
        if (named === '') unnamedRefused = denied;
        if (!denied && named && chance(0.3)) both(Describe('S', named));
      }
      const stmt = parse ? (denied ? '' : name) : pick(['', 's1', 's2']);
      const params = /\$1/.test(text) ? ['p'] : [];
      const bind = Bind(portal, stmt, pick([null, 0, 1]), params);
      gw.push(bind);
      // Binding a refused statement is refused too; its stand-in is an Execute that fails.
      direct.push(stmt === '' && unnamedRefused ? Execute('pgwarden refused', 0) : bind);
      if (chance(0.6)) both(Describe('P', portal));
      both(Execute(chance(0.3) ? pick(['fzc', portal]) : portal, pick([0, 0, 1, 5])));
      if (chance(0.2)) both(Execute(portal, 0));
      if (chance(0.15)) {
        const [kind, target] = [pick(['S', 'P']), pick([name, portal])];
        both(Close(kind, target));
        if (kind === 'S' && target === '') unnamedRefused = false; // pgwarden forgets its refusal
      }
      if (chance(0.2)) both(Flush());
      if (chance(0.5)) { both(Sync()); batchOpen = false; }
    } else if (r < 0.82) {
      both(Sync());
      batchOpen = false;
    } else if (r < 0.9) {
      // COPY FROM STDIN with a few rows (ends with CopyDone, or fails on purpose).
      both(query('COPY fz_work FROM STDIN'));
      unnamedRefused = false;
      for (let k = 0; k < 1 + Math.floor(rnd() * 3); k++) both(message('d', Buffer.from(`${Math.floor(rnd() * 1000)}\tc\n`)));
      both(chance(0.8) ? message('c') : message('f', cstr('fuzz gave up')));
    } else if (r < 0.95) {
      // random(), now(): built-ins by OID. The policy allows calls, but the masking profile's
      // column rules refuse fast-path calls other than libpq's large-object ones: pgwarden answers.
      gw.push(FunctionCall(pick([1598, 1299])));
      localRefusals++;
    } else if (!batchOpen) {
      both(query("SELECT 'caf\u00e9' AS accent"));
      unnamedRefused = false;
    }
  }
  // End every chunk at a known point: Sync ends any skipping, the marker Query is always answered.
  both(Sync());
  return { gw, direct, localRefusals };
}

// Sends messages in random-sized writes and reads until the marker's ReadyForQuery.
async function run(w, msgs, marker) {
  // The marker ends any transaction first, so it is answered whatever state the chunk left.
  const all = [...msgs, query(`ROLLBACK; SELECT '${marker}' AS ${marker}`)];
  for (let i = 0; i < all.length;) {
    const k = 1 + Math.floor(rnd() * 4);
    w.write(Buffer.concat(all.slice(i, i + k)));
    i += k;
  }
  const out = [];
  let sawMarker = false;
  for (;;) {
    let m;
    try {
      m = await w.next(['1', '2', '3', 'A', 'C', 'D', 'E', 'G', 'H', 'I', 'N', 'S', 'T', 'V', 'Z', 'c', 'd', 'n', 's', 't'], 10000);
    } catch (e) {
      throw new Error(`${e.message}; replies so far: ${out.map((x) => (x.type === 'D' ? `D[${x.body.toString('latin1')}]` : shape(x))).join(' ')}`);
    }
    if (m === null) throw new Error(`connection closed; replies so far: ${out.map(shape).join(' ')}`);
    out.push(m);
    // Known by its column's name: a value may be masked (blind, before the catalog is read).
    if (m.type === 'T' && m.body.toString('latin1', 2).startsWith(`${marker}\0`)) sawMarker = true;
    if (m.type === 'Z' && sawMarker) {
      // The replies to the chunk, without the marker query's own ([N] C T D C Z).
      let cut = out.findLastIndex((x) => x.type === 'T') - 1;
      while (cut > 0 && out[cut - 1].type === 'N') cut--;
      return { replies: out.slice(0, cut), all: out };
    }
  }
}

const fields = (m) => errorFields(m.body);
// A chunk's messages, for the report of a failure.
const describe = (msgs) => msgs.map((m) => {
  const t = String.fromCharCode(m[0]);
  const body = m.subarray(5).toString('latin1').replace(/\0/g, '|');
  return t + (t === 'Q' || t === 'P' || t === 'B' || t === 'E' ? `[${body.slice(0, 60)}]` : '');
}).join(' ');
const showMsg = (m) => (m.type === 'E' ? `E(${errorFields(m.body).C} ${errorFields(m.body).M})` : shape(m));
// FUZZ_TRACE=file: every chunk of every session, both ways, for investigating a failure.
const trace = (line) => {
  if (process.env.FUZZ_TRACE) appendFileSync(process.env.FUZZ_TRACE, line + '\n');
};
// What must be equal both ways, per message.
function shape(m) {
  switch (m.type) {
    case 'D': return `D${m.body.readInt16BE(0)}`;
    case 'E': case 'N': case 'd': case 'V': return m.type;
    case 'A': return `A:${m.body.toString('latin1', 4, m.body.indexOf(0, 4))}`;
    case 'T': {
      // Names, types and formats (table OIDs differ: the scratch table is made anew per run).
      const cols = [];
      let p = 2;
      for (let i = 0; i < m.body.readInt16BE(0); i++) {
        const end = m.body.indexOf(0, p);
        cols.push(`${m.body.toString('latin1', p, end)}/${m.body.readUInt32BE(end + 7)}/${m.body.readInt16BE(end + 17)}`);
        p = end + 19;
      }
      return `T:${cols.join(',')}`;
    }
    default: return `${m.type}:${m.body.toString('latin1')}`;
  }
}
const pgwardenError = (m) => m?.type === 'E' && /^pgwarden: /.test(fields(m).M ?? '');
// The direct run's equivalent of a refused extended message fails like its stand-in.
const standinEquivalent = (m) => m?.type === 'E' && /pgwarden/.test(fields(m).M ?? '');

function compare(gw, direct, localRefusals) {
  let i = 0;
  let j = 0;
  let refusals = 0;
  while (i < gw.length || j < direct.length) {
    const g = gw[i];
    const d = direct[j];
    // A refused Query pgwarden answered itself, or a refused extended message's stand-in? When
    // the direct run has a stand-in's error here too, the ReadyForQuery after it tells them apart
    // in a transaction block (pgwarden's own answer leaves the status as it was; the stand-in's
    // error aborts the block).
    const local = pgwardenError(g) && gw[i + 1]?.type === 'Z' && refusals < localRefusals &&
      (!standinEquivalent(d) || (direct[j + 1]?.type === 'Z' && shape(gw[i + 1]) !== shape(direct[j + 1])));
    if (local) {
      refusals++; // pgwarden answered a refused Query itself: the direct run never sent it
      i += 2;
      continue;
    }
    assert.ok(g && d, `the replies differ in length at ${i}/${j}: ${g ? shape(g) : '(none)'} vs ${d ? shape(d) : '(none)'}`);
    assert.equal(shape(g), shape(d), `reply ${i} differs (through pgwarden vs directly): ${gw.map(showMsg).join(' ')} | ${direct.map(showMsg).join(' ')}`);
    if (g.type === 'E' && fields(g).C !== fields(d).C) {
      // A refused extended message: pgwarden's 42501 in place of its stand-in's error.
      assert.ok(pgwardenError(g) && standinEquivalent(d),
        `error ${fields(g).C} (${fields(g).M}) where PostgreSQL said ${fields(d).C} (${fields(d).M})`);
    }
    i++;
    j++;
  }
}

// The outcomes a client saw, as the recording names them.
const outcomesSeen = (msgs) => msgs.flatMap((m) => {
  switch (m.type) {
    case 'C': return [m.body.toString('latin1').replace(/\0$/, '')];
    case 'E': return [fields(m).C];
    case 'I': return ['(empty query)'];
    case 's': return ['(portal suspended)'];
    case 'V': return ['(function result)'];
    default: return [];
  }
});

function recordedOutcomes(app) {
  const out = execFileSync(process.env.PGW_BIN, ['export', '--record-dir', process.env.PGW_REC_DIR, '--format', 'jsonl'],
    { maxBuffer: 256 << 20 }).toString();
  for (const raw of RAW) assert.ok(!out.includes(raw), `raw fixture value ${raw} is in the recording`);
  const events = out.split('\n').filter(Boolean).map((l) => JSON.parse(l));
  const start = events.find((e) => e.type === 'session_start' && e.application_name === app);
  assert.ok(start, `no recorded session ${app}`);
  return events.filter((e) => e.session === start.session && e.type === 'outcome' && e.command_tag !== '(skipped)')
    .map((e) => e.command_tag ?? e.sqlstate);
}

async function connect(port, app) {
  const w = new Wire(port);
  w.keepRows = true;
  await w.connected();
  w.write(startupPacket({ user: 'fuzz', database: 'postgres', application_name: app }));
  const z = await w.next(['Z', 'E']);
  if (z?.type !== 'Z') throw new Error('startup failed');
  return w;
}

async function reset(admin) {
  await admin.query('DROP TABLE IF EXISTS fz_work; CREATE TABLE fz_work (id int, v text); GRANT ALL ON fz_work TO fuzz');
  await admin.query('SELECT pg_advisory_unlock_all()');
}

async function main() {
  const admin = new pg.Client({ host: '127.0.0.1', port: pgPort, user: 'postgres', password: process.env.PGPASSWORD, database: 'postgres' });
  await admin.connect();
  const canary = async () => Number((await admin.query('SELECT count(*) AS n FROM fz_canary')).rows[0].n);
  const startCanary = await canary();
  const deadline = Date.now() + seconds * 1000;
  let chunks = 0;
  let sessions = 0;
  let failure = null;
  const firstSeed = seed;
  while (Date.now() < deadline && !failure) {
    // One session pair per seed: the same messages directly and through pgwarden, from the same state.
    const sessionSeed = seed++;
    state = sessionSeed >>> 0;
    unnamedRefused = false;
    const plan = [];
    for (let i = 0; i < 12; i++) plan.push(chunk());
    sessions++;
    await reset(admin);
    const app = `fuzz-${sessionSeed}`;
    let chunksThisSession = 0;
    const seen = [];
    try {
      const d = await connect(pgPort, app);
      const directOut = [];
      for (let i = 0; i < plan.length; i++) {
        directOut.push((await run(d, plan[i].direct, `m${i}`)).replies);
        trace(`direct ${i}: ${describe(plan[i].direct)}\n  => ${directOut[i].map(showMsg).join(' ')}`);
      }
      d.write(message('X'));
      d.end();
      await reset(admin);
      const w = await connect(gwPort, app);
      for (let i = 0; i < plan.length; i++) {
        chunksThisSession = i;
        const got = await run(w, plan[i].gw, `m${i}`);
        trace(`gateway ${i}: ${describe(plan[i].gw)}\n  => ${got.replies.map(showMsg).join(' ')}`);
        chunks++;
        seen.push(...got.all);
        const text = got.all.map((m) => m.body.toString('latin1')).join('\n');
        for (const raw of RAW) assert.ok(!text.includes(raw), `raw fixture value ${raw} reached the client`);
        assert.ok(!/cannot follow the protocol/.test(text), 'the pipeline model diverged');
        compare(got.replies, directOut[i], plan[i].localRefusals);
        assert.equal(await canary(), startCanary, 'a denied statement took effect');
      }
      w.write(message('X'));
      w.end();
      // Every outcome the client saw is recorded, in order, for that statement's session.
      await new Promise((r) => setTimeout(r, 120));
      assert.deepEqual(recordedOutcomes(app), outcomesSeen(seen), 'the recorded outcomes differ from what the client saw');
    } catch (e) {
      failure = { seed: sessionSeed, error: e.message.slice(0, 3000) };
      const chunkNo = Math.min(chunksThisSession, plan.length - 1);
      console.log(`fuzz: chunk ${chunkNo} through pgwarden: ${describe(plan[chunkNo]?.gw ?? [])}`);
      if (seen.length) console.log(`fuzz: last replies: ${seen.slice(-12).map(shape).join(' ')}`);
    }
  }
  await admin.end();
  if (failure) {
    console.log(`fuzz: FAILED with seed ${failure.seed} (replay: --seed ${failure.seed} --seconds 1): ${failure.error}`);
  }
  console.log(`fuzz: ${sessions} sessions, ${chunks} chunks from seed ${firstSeed}, failures ${failure ? 1 : 0}`);
  process.exit(failure ? 1 : 0);
}

main().catch((e) => {
  console.log(`fuzz: error ${e.stack}`);
  process.exit(1);
});
