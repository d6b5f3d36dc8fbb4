// The MCP endpoint with the official TypeScript SDK (Client + StreamableHTTPClientTransport):
// OAuth resource-server behaviour (401 with resource metadata, audience = the endpoint's URL),
// sessions bound to their token's subject, the four tools through the same stages as wire
// clients (policy, approvals, masking, recording with the call's intent and trace context), and
// an agent's on-behalf-of token recorded with both identities and matched by an agent rule.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync, chmodSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { env, withClient, startGateway, sleep, makeIdp, adminCall } from './lib.mjs';

const SECRET = { mcp_reader: 'mcp-Reader-Secret-1', mcp_writer: 'mcp-Writer-Secret-2' };
const TRACE = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
let dir, gw, idp, port, url;

const POLICY = {
  admins: ['dba-oncall'],
  may_act: [{ actor: 'agent-7', for_groups: ['analysts', 'writers'], actor_groups: ['ai-agents'] }],
  role_mappings: [
    { group: 'writers', role: 'mcp_writer', database: 'postgres' },
    { group: 'analysts', role: 'mcp_reader', database: 'postgres' },
    { group: 'dba-oncall', role: 'mcp_writer', database: 'postgres' },
  ],
  rules: [
    { name: 'agents', actor_groups: ['ai-agents'], deny: ['drop', 'truncate'] },
    { name: 'writers', groups: ['writers'], deny: ['drop', 'truncate'], require_approval: ['delete'], approvers: ['dba-oncall'] },
    { name: 'analysts', groups: ['analysts'], read_only: true },
  ],
  masking: [{ name: 'analysts', groups: ['analysts', 'writers'], detectors: { email: 'redact' } }],
};

const freePort = () => new Promise((resolve) => {
  const s = net.createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
});
const mcpToken = (email, groups, opts = {}) => idp.token(email, groups, { aud: url, ...opts });
async function connectClient(token, name = 'pgwarden-test') {
  const client = new Client({ name, version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { Authorization: `Bearer ${token}` } } });
  await client.connect(transport);
  return { client, transport };
}
const exported = () => new Promise((resolve, reject) => execFile(env.bin, ['export', '--record-dir', join(dir, 'rec'), '--format', 'jsonl'],
  { maxBuffer: 64 << 20 }, (err, stdout) => (err ? reject(err) : resolve(stdout.trim().split('\n').map((l) => JSON.parse(l))))));
const rows = (n) => withClient(env.pgPort, async (c) => Number((await c.query(n)).rows[0].n));

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pgw-mcp-'));
  port = await freePort();
  url = `http://127.0.0.1:${port}/mcp`;
  idp = await makeIdp(dir, { audience: 'pgwarden-admin' });
  await withClient(env.pgPort, async (c) => {
    for (const [role, pw] of Object.entries(SECRET)) {
      await c.query(`DROP ROLE IF EXISTS ${role}`);
      await c.query(`CREATE ROLE ${role} LOGIN PASSWORD '${pw}'`);
    }
    await c.query('DROP SCHEMA IF EXISTS mcpt CASCADE');
    await c.query('CREATE SCHEMA mcpt AUTHORIZATION mcp_writer');
    await c.query('GRANT USAGE ON SCHEMA mcpt TO mcp_reader');
    await c.query('CREATE TABLE mcpt.people (id int PRIMARY KEY, email text NOT NULL, note text)');
    await c.query("INSERT INTO mcpt.people VALUES (1, 'alice@example.org', 'a'), (2, 'bob@example.org', 'b'), (3, 'carol@example.org', 'c')");
    await c.query('ALTER TABLE mcpt.people OWNER TO mcp_writer');
    await c.query('GRANT SELECT ON mcpt.people TO mcp_reader');
  });
  writeFileSync(join(dir, 'policy.json'), JSON.stringify(POLICY));
  writeFileSync(join(dir, 'secrets'), Object.entries(SECRET).map(([r, p]) => `${r} ${p}\n`).join(''));
  chmodSync(join(dir, 'secrets'), 0o600);
  writeFileSync(join(dir, 'seal.key'), 'm'.repeat(40));
  chmodSync(join(dir, 'seal.key'), 0o600);
  gw = await startGateway(['--upstream', `127.0.0.1:${env.pgPort}`, '--threads', '2', '--policy', join(dir, 'policy.json'),
    '--upstream-secrets', join(dir, 'secrets'), '--jwks-file', idp.file, '--oidc-issuer', idp.issuer,
    '--oidc-audience', 'pgwarden-sql', '--admin-audience', 'pgwarden-admin', '--allow-plaintext-auth',
    '--admin-listen', `127.0.0.1:${port}`, '--mcp-url', url, '--mcp-call-timeout', '20',
    '--record-dir', join(dir, 'rec'), '--record-key-file', join(dir, 'seal.key')]);
});

after(async () => {
  gw.kill('SIGINT');
  gw.kill('SIGINT');
  await gw.exited;
  await withClient(env.pgPort, (c) => c.query('DROP SCHEMA IF EXISTS mcpt CASCADE'));
  rmSync(dir, { recursive: true, force: true });
});

test('an OAuth resource server: 401 with resource metadata; only tokens for this endpoint', async () => {
  const bare = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: {} }) });
  assert.equal(bare.status, 401);
  const challenge = bare.headers.get('www-authenticate');
  assert.match(challenge, /^Bearer resource_metadata="http:\/\/127\.0\.0\.1:\d+\/\.well-known\/oauth-protected-resource\/mcp"/);
  const meta = await (await fetch(/resource_metadata="([^"]+)"/.exec(challenge)[1])).json();
  assert.equal(meta.resource, url);
  assert.deepEqual(meta.authorization_servers, [idp.issuer]);
  // A token for the SQL listener or the admin API is not one for this endpoint; nor an expired one.
  for (const token of [await idp.token('ann@example.com', ['analysts'], { aud: 'pgwarden-sql' }),
    await idp.token('ann@example.com', ['analysts']),
    await mcpToken('ann@example.com', ['analysts'], { exp: Math.floor(Date.now() / 1000) - 600 })]) {
    await assert.rejects(connectClient(token), /401|invalid/i);
  }
});

test('the SDK: initialize, list tools, query with intent and trace context; rows masked; all recorded', async () => {
  const { client, transport } = await connectClient(await mcpToken('ann@example.com', ['analysts']), 'claude-test');
  try {
    assert.match(transport.sessionId, /^[0-9a-f]{32}$/);
    const tools = (await client.listTools()).tools.map((t) => t.name).sort();
    assert.deepEqual(tools, ['describe_table', 'explain', 'list_tables', 'query']);
    const r = await client.callTool({ name: 'query', arguments: { sql: 'SELECT id, email FROM mcpt.people ORDER BY id', intent: 'find late payers', max_rows: 2 },
      _meta: { traceparent: TRACE } });
    assert.equal(r.isError, false, JSON.stringify(r));
    assert.deepEqual(r.structuredContent.columns, ['id', 'email']);
    assert.deepEqual(r.structuredContent.rows, [{ id: '1', email: 'REDACTED' }, { id: '2', email: 'REDACTED' }]);
    assert.equal(r.structuredContent.row_count, 3);
    assert.equal(r.structuredContent.truncated, true);
    assert.ok(!r.content[0].text.includes('example.org'), r.content[0].text);
    const tables = await client.callTool({ name: 'list_tables', arguments: { schema: 'mcpt' } });
    assert.deepEqual(tables.structuredContent.rows, [{ schema: 'mcpt', name: 'people', kind: 'table' }]);
    const cols = await client.callTool({ name: 'describe_table', arguments: { table: 'mcpt.people' } });
    assert.deepEqual(cols.structuredContent.rows.map((c) => [c.column, c.type, c.nullable]), [['id', 'integer', 'f'], ['email', 'text', 'f'], ['note', 'text', 't']]);
    const plan = await client.callTool({ name: 'explain', arguments: { sql: 'SELECT * FROM mcpt.people WHERE id = 1' } });
    assert.equal(plan.isError, false);
    assert.match(plan.content[0].text, /Scan/);
    // Protocol faults are JSON-RPC errors; SQL faults are tool results the model can read.
    await assert.rejects(client.callTool({ name: 'drop_everything', arguments: {} }), /unknown tool/);
    await assert.rejects(client.callTool({ name: 'query', arguments: {} }), /"sql" is required/);
    const bad = await client.callTool({ name: 'query', arguments: { sql: 'SELEC 1' } });
    assert.equal(bad.isError, true);
    assert.match(bad.structuredContent.sqlstate, /^42[56]01$/);
  } finally {
    await client.close();
  }
  await sleep(300);
  const recs = await exported();
  const q = recs.find((x) => x.type === 'parse' && x.tool === 'query' && /FROM mcpt\.people ORDER BY/.test(x.text));
  assert.ok(q, 'the tool call\'s statement is recorded');
  assert.equal(q.intent, 'find late payers');
  assert.equal(q.traceparent, TRACE);
  assert.equal(q.mcp_call, '1');
  assert.match(q.mcp_session, /^[0-9a-f]{32}$/);
  assert.equal(q.arguments, '{"max_rows":2}');
  const start = recs.find((x) => x.type === 'session_start' && x.session === q.session);
  assert.equal(start.identity, 'ann@example.com');
  assert.equal(start.auth_method, 'mcp');
  assert.equal(start.role, 'mcp_reader');
  assert.match(start.application_name, /claude-test/);
});

test('escapes come back isError with nothing changed: DROP, COMMIT; INSERT, BEGIN; a write under a read-only rule', async () => {
  const { client } = await connectClient(await mcpToken('wes@example.com', ['writers']));
  try {
    const attempts = ['DROP TABLE mcpt.people', "COMMIT; INSERT INTO mcpt.people VALUES (9, 'x@y.z', 'x')",
      "INSERT INTO mcpt.people VALUES (9, 'x@y.z', 'x'); DROP TABLE mcpt.people", 'BEGIN'];
    for (const sql of attempts) {
      const r = await client.callTool({ name: 'query', arguments: { sql } });
      assert.equal(r.isError, true, `${sql}: ${JSON.stringify(r)}`);
    }
    // The session still works after them (no transaction left open).
    const ok = await client.callTool({ name: 'query', arguments: { sql: 'SELECT count(*) AS n FROM mcpt.people' } });
    assert.equal(ok.structuredContent.rows[0].n, '3');
  } finally {
    await client.close();
  }
  assert.equal(await rows('SELECT count(*) AS n FROM mcpt.people'), 3);
  const { client: reader } = await connectClient(await mcpToken('ann@example.com', ['analysts']));
  const w = await reader.callTool({ name: 'query', arguments: { sql: "UPDATE mcpt.people SET note = 'x'" } });
  assert.equal(w.isError, true);
  assert.equal(w.structuredContent.sqlstate, '42501');
  await reader.close();
});

test('a session is its token\'s subject\'s: another subject\'s token is refused; DELETE ends it', async () => {
  const annToken = await mcpToken('ann@example.com', ['analysts']);
  const { client, transport } = await connectClient(annToken);
  const sid = transport.sessionId;
  const call = (token, headers = {}) => fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream',
    Authorization: `Bearer ${token}`, 'Mcp-Session-Id': sid, 'MCP-Protocol-Version': '2025-11-25', ...headers },
  body: JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'query', arguments: { sql: 'SELECT 1' } } }) });
  assert.equal((await call(await mcpToken('wes@example.com', ['writers']))).status, 403);
  assert.equal((await call(await mcpToken('ann@example.com', ['analysts'], { claims: { act: { sub: 'agent-7' } } }))).status, 403);
  assert.equal((await call(annToken, { 'MCP-Protocol-Version': '1999-01-01' })).status, 400);
  assert.equal((await call(annToken, { 'Mcp-Session-Id': '' })).status, 400);
  assert.equal((await call(annToken, { 'Mcp-Session-Id': 'f'.repeat(32) })).status, 404);
  const own = await call(annToken);
  assert.equal(own.status, 200);
  assert.equal((await own.json()).result.isError, false);
  const note = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${annToken}`, 'Mcp-Session-Id': sid },
    body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 1 } }) });
  assert.equal(note.status, 202);
  await transport.terminateSession();
  assert.equal((await call(annToken)).status, 404);
  await client.close();
});

test('an agent acting for a user: both recorded, the agents\' rule applies; a held DELETE waits for an approval', async () => {
  const { client } = await connectClient(await mcpToken('wes@example.com', ['writers'], { claims: { act: { sub: 'agent-7' } } }), 'agent-runner');
  const drop = await client.callTool({ name: 'query', arguments: { sql: 'DROP TABLE mcpt.people' } });
  assert.equal(drop.isError, true);
  assert.match(drop.content[0].text, /rule "agents"/);
  await client.close();
  await sleep(300);
  const start = (await exported()).find((x) => x.type === 'session_start' && (x.actors || [])[0] === 'agent-7' && x.auth_method === 'mcp');
  assert.equal(start.identity, 'wes@example.com');
  // Wes himself (the writers' rule): his DELETE waits for a DBA, who approves it on the admin API.
  const { client: wes } = await connectClient(await mcpToken('wes@example.com', ['writers']));
  const pending = wes.callTool({ name: 'query', arguments: { sql: 'DELETE FROM mcpt.people WHERE id = 3', intent: 'remove a duplicate' } });
  const dba = await idp.token('dana@example.com', ['dba-oncall']);
  let held;
  for (let i = 0; i < 100 && !held; i++) {
    held = (await adminCall(gw, 'GET', '/api/v1/approvals', { token: dba })).json().find((p) => /DELETE FROM mcpt\.people/.test(p.statement));
    if (!held) await sleep(100);
  }
  assert.ok(held, 'the tool call\'s statement is held');
  assert.equal(held.identity, 'wes@example.com');
  assert.match(held.statement, /intent='remove%20a%20duplicate'/, 'the approver sees the intent');
  assert.equal((await adminCall(gw, 'POST', `/api/v1/approvals/${held.id}/approve`, { token: dba, body: { reason: 'ok' } })).status, 200);
  const done = await pending;
  assert.equal(done.isError, false, JSON.stringify(done));
  assert.equal(done.structuredContent.command, 'DELETE 1');
  assert.equal(await rows('SELECT count(*) AS n FROM mcpt.people'), 2);
  await wes.close();
});
