// Driven by bench/mcp_bench.sh (which starts PostgreSQL): starts pgwarden with the MCP endpoint,
// then times MCP `query` calls against the same statement over the wire, interleaved.
import { createRequire } from 'node:module';
import { spawn } from 'node:child_process';
import { writeFileSync, readFileSync, chmodSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const req = createRequire(join(root, 'tests/integration/node/package.json'));
const load = async (name) => import(req.resolve(name));
const jose = await load('jose');
const pg = (await load('pg')).default;
const { Client } = await load('@modelcontextprotocol/sdk/client/index.js');
const { StreamableHTTPClientTransport } = await load('@modelcontextprotocol/sdk/client/streamableHttp.js');

const { PGW_BIN: bin, PG_PORT: pgPort, BENCH_DIR: dir } = process.env;
const rounds = Number(process.env.ROUNDS || 5);
const calls = Number(process.env.CALLS || 300);
const freePort = () => new Promise((resolve) => {
  const s = net.createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
});

const issuer = 'https://idp.bench';
const { publicKey, privateKey } = await jose.generateKeyPair('ES256');
writeFileSync(join(dir, 'jwks.json'), JSON.stringify({ keys: [{ ...(await jose.exportJWK(publicKey)), kid: 'k', alg: 'ES256' }] }));
const token = (aud, who = 'ann') => new jose.SignJWT({ email: `${who}@example.com`, groups: ['analysts'] })
  .setProtectedHeader({ alg: 'ES256', kid: 'k' }).setIssuer(issuer).setAudience(aud).setSubject(who)
  .setIssuedAt().setExpirationTime('1h').sign(privateKey);
writeFileSync(join(dir, 'policy.json'), JSON.stringify({
  role_mappings: [{ group: 'analysts', role: 'bench_reader', database: 'postgres' }],
  rules: [{ name: 'analysts', groups: ['analysts'], read_only: true, deny: ['drop', 'truncate'] }],
  masking: [{ name: 'analysts', groups: ['analysts'], detectors: { email: 'redact' } }],
}));
writeFileSync(join(dir, 'secrets'), 'bench_reader bench-Reader-Secret-1\n');
chmodSync(join(dir, 'secrets'), 0o600);
writeFileSync(join(dir, 'seal.key'), 'b'.repeat(40));
chmodSync(join(dir, 'seal.key'), 0o600);
// Two gateways alike but for the MCP endpoint's pool: the default, and --mcp-pool 0 (a login
// and a PostgreSQL connection per call).
async function startGateway(name, extra) {
  const sqlPort = await freePort();
  const adminPort = await freePort();
  const url = `http://127.0.0.1:${adminPort}/mcp`;
  const proc = spawn(bin, ['--listen', `127.0.0.1:${sqlPort}`, '--upstream', `127.0.0.1:${pgPort}`, '--threads', '1',
    '--policy', join(dir, 'policy.json'), '--upstream-secrets', join(dir, 'secrets'), '--jwks-file', join(dir, 'jwks.json'),
    '--oidc-issuer', issuer, '--oidc-audience', 'sql', '--allow-plaintext-auth', '--admin-listen', `127.0.0.1:${adminPort}`,
    '--mcp-url', url, '--record-dir', join(dir, `rec-${name}`), '--record-key-file', join(dir, 'seal.key'),
    '--record-durability', 'batch', ...extra], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr.on('data', (d) => { log += d; });
  for (let i = 0; i < 100 && !/listening on/.test(log); i++) await new Promise((r) => setTimeout(r, 50));
  if (!/listening on/.test(log)) throw new Error(`pgwarden did not start:\n${log}`);
  return { proc, sqlPort, url };
}
const main = await startGateway('pooled', []);
const nopool = await startGateway('nopool', ['--mcp-pool', '0']);
const { sqlPort, url } = main;
const gw = main.proc;

const cpuOf = (pid) => {  // a pgwarden's user+system CPU seconds
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
};
const sql = (i) => `SELECT id, email, note FROM bench.people WHERE id = ${1 + (i % 1000)}`;

const wire = new pg.Client({ host: '127.0.0.1', port: sqlPort, user: 'ann@example.com', password: await token('sql'), database: 'postgres' });
await wire.connect();
const mcpToken = await token(url);
const mcp = new Client({ name: 'mcp-bench', version: '1.0.0' });
const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { Authorization: `Bearer ${mcpToken}` } } });
await mcp.connect(transport);
// The same call as bare HTTP (no SDK), on the SDK's session: what the client library adds aside.
const rawHeaders = { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream',
  Authorization: `Bearer ${mcpToken}`, 'Mcp-Session-Id': transport.sessionId, 'MCP-Protocol-Version': '2025-11-25' };
// Bare HTTP sessions: another caller (bob) on the same gateway, and ann on the pool-less one.
async function rawSession(url, bearer) {
  const headers = { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream',
    Authorization: `Bearer ${bearer}`, 'MCP-Protocol-Version': '2025-11-25' };
  const res = await fetch(url, { method: 'POST', headers, body: JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'initialize',
    params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'mcp-bench-raw', version: '1' } } }) });
  await res.json();
  return { ...headers, 'Mcp-Session-Id': res.headers.get('mcp-session-id') };
}
const bobHeaders = await rawSession(url, await token(url, 'bob'));
const nopoolHeaders = await rawSession(nopool.url, await token(nopool.url));
const rawCall = async (to, headers, i) => {
  const res = await fetch(to, { method: 'POST', headers, body: JSON.stringify({ jsonrpc: '2.0', id: i,
    method: 'tools/call', params: { name: 'query', arguments: { sql: sql(i), intent: 'benchmark' } } }) });
  const r = (await res.json()).result;
  if (r.isError || r.structuredContent.rows[0].email !== 'REDACTED') throw new Error(JSON.stringify(r));
};

const targets = {
  wire: async (i) => {
    const r = await wire.query({ text: sql(i), values: [] });  // extended protocol, unnamed, as the MCP path
    if (r.rows[0].email !== 'REDACTED') throw new Error('unmasked');
  },
  raw: async (i) => {
    const res = await fetch(url, { method: 'POST', headers: rawHeaders, body: JSON.stringify({ jsonrpc: '2.0', id: i,
      method: 'tools/call', params: { name: 'query', arguments: { sql: sql(i), intent: 'benchmark' } } }) });
    const r = (await res.json()).result;
    if (r.isError || r.structuredContent.rows[0].email !== 'REDACTED') throw new Error(JSON.stringify(r));
  },
  // Calls of ann and bob in turn: each call's connection passes from the other caller.
  handover: (i) => rawCall(url, i % 2 ? bobHeaders : rawHeaders, i),
  // No pool: a one-time login, a pgwarden session and a PostgreSQL connection per call.
  nopool: (i) => rawCall(nopool.url, nopoolHeaders, i),
  mcp: async (i) => {
    const r = await mcp.callTool({ name: 'query', arguments: { sql: sql(i), intent: 'benchmark' } });
    if (r.isError || r.structuredContent.rows[0].email !== 'REDACTED') throw new Error(JSON.stringify(r));
  },
};
for (const t of Object.values(targets)) for (let i = 0; i < 50; i++) await t(i);  // warm up

const names = Object.keys(targets);
const results = Object.fromEntries(names.map((n) => [n, []]));
const median = (a) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };
for (let r = 0; r < rounds; r++) {
  for (let k = 0; k < names.length; k++) {
    const name = names[(k + r) % names.length];
    const pid = name === 'nopool' ? nopool.proc.pid : gw.pid;
    const cpu = () => cpuOf(pid);
    const lat = [];
    const c0 = cpu();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < calls; i++) {
      const s = process.hrtime.bigint();
      await targets[name](i);
      lat.push(Number(process.hrtime.bigint() - s) / 1000);
    }
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    const c1 = cpu();
    lat.sort((a, b) => a - b);
    results[name].push({ rate: calls / secs, p50: lat[Math.floor(calls / 2)], p95: lat[Math.floor(calls * 0.95)], cpu_us: (c1 - c0) * 1e6 / calls });
  }
}
await mcp.close();
await wire.end();
gw.kill('SIGTERM');
nopool.proc.kill('SIGTERM');

console.log(`${rounds} interleaved rounds of ${calls} sequential calls each; medians over the rounds (min–max)`);
console.log('| path | calls/s | p50 latency (µs) | p95 latency (µs) | pgwarden CPU per call (µs) |');
console.log('|---|---:|---:|---:|---:|');
const span = (a, k) => `${Math.round(median(a.map((x) => x[k])))} (${Math.round(Math.min(...a.map((x) => x[k])))}–${Math.round(Math.max(...a.map((x) => x[k])))})`;
const label = { wire: 'SQL over the wire (node pg)', raw: 'MCP query tool, bare HTTP (fetch)', mcp: 'MCP query tool (official SDK client)',
  handover: 'MCP, bare HTTP, two callers in turn (a handover per call)', nopool: 'MCP, bare HTTP, --mcp-pool 0 (a connection per call)' };
for (const name of ['wire', 'raw', 'mcp', 'handover', 'nopool']) {
  const a = results[name];
  console.log(`| ${label[name]} | ${span(a, 'rate')} | ${span(a, 'p50')} | ${span(a, 'p95')} | ${span(a, 'cpu_us')} |`);
}
for (const name of ['raw', 'mcp', 'handover', 'nopool']) {
  const added = median(results[name].map((x) => x.p50)) - median(results.wire.map((x) => x.p50));
  console.log(`added latency per call (p50, ${label[name]} - wire): ${Math.round(added)} µs; throughput ratio: ` +
    `${(median(results[name].map((x) => x.rate)) / median(results.wire.map((x) => x.rate))).toFixed(2)}`);
}
