// Mints the JWT test cases for tests/policy/jwt_test.cc with the npm `jose` package, an
// implementation independent of pgwarden's. Usage: node mint_jwt_cases.mjs OUT.json
// Every token is minted for a fixed "now" so the committed file stays valid.
import { writeFileSync } from 'node:fs';
import { createHmac, sign as cryptoSign } from 'node:crypto';
import * as jose from 'jose';

const now = 1_900_000_000;
const ISS = 'https://idp.example.com';
const AUD = 'pgwarden';
const b64 = (s) => Buffer.from(s).toString('base64url');

const rsa = await jose.generateKeyPair('RS256', { extractable: true, modulusLength: 2048 });
const rsa2 = await jose.generateKeyPair('RS256', { extractable: true, modulusLength: 2048 });
const ec = await jose.generateKeyPair('ES256', { extractable: true });
const ed = await jose.generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
const attacker = await jose.generateKeyPair('RS256', { extractable: true, modulusLength: 2048 });
const ec384 = await jose.generateKeyPair('ES384', { extractable: true });

const pub = async (k, kid, alg) => ({ ...(await jose.exportJWK(k.publicKey)), kid, alg, use: 'sig' });
const rsaJwk = await pub(rsa, 'rsa1', 'RS256');
const jwks = {
  keys: [
    rsaJwk,
    await pub(rsa2, 'rsa2', 'RS256'),
    await pub(ec, 'ec1', 'ES256'),
    { ...(await jose.exportJWK(ed.publicKey)), kid: 'ed1' },
    await pub(ec384, 'ec384', 'ES384'), // unsupported curve: ignored
    { kty: 'oct', kid: 'hmac1', k: b64('shared-secret-that-must-never-work') }, // ignored
    { ...(await jose.exportJWK(rsa.publicKey)), kid: 'enc1', use: 'enc' }, // not for signatures
  ],
};

const baseClaims = { iss: ISS, aud: AUD, email: 'alice@example.com', sub: 'u-123', groups: ['analysts', 'oncall'] };
async function sign(key, alg, kid, claims = {}, header = {}) {
  const body = { iat: now - 60, exp: now + 3600, ...baseClaims, ...claims };
  for (const [k, v] of Object.entries(body)) if (v === undefined) delete body[k];
  return new jose.CompactSign(Buffer.from(JSON.stringify(body)))
    .setProtectedHeader({ alg, ...(kid ? { kid } : {}), ...header })
    .sign(key);
}
// Hand-built tokens for what jose refuses to produce.
function raw(header, payload, sig = '') {
  return `${b64(JSON.stringify(header))}.${typeof payload === 'string' ? b64(payload) : b64(JSON.stringify(payload))}.${sig}`;
}
function hs256(header, payload, secret) {
  const input = `${b64(JSON.stringify(header))}.${b64(JSON.stringify(payload))}`;
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
}
const claims = { iat: now - 60, exp: now + 3600, ...baseClaims };
// RS256 over texts written by hand: JSON with a member name repeated, which no encoder emits.
function rs256Text(headerText, payloadText) {
  const input = `${b64(headerText)}.${b64(payloadText)}`;
  return `${input}.${cryptoSign('sha256', Buffer.from(input), rsa.privateKey).toString('base64url')}`;
}
const claimsText = JSON.stringify(claims).slice(0, -1);

const cases = [];
const ok = (name, token, identity, groups, more = {}) => cases.push({ name, token, expect: 'accept', identity, groups, ...more });
const bad = (name, token, reason) => cases.push({ name, token, expect: 'reject', reason });

ok('rs256', await sign(rsa.privateKey, 'RS256', 'rsa1'), 'alice@example.com', ['analysts', 'oncall']);
ok('rs256 second key', await sign(rsa2.privateKey, 'RS256', 'rsa2'), 'alice@example.com', ['analysts', 'oncall']);
ok('es256', await sign(ec.privateKey, 'ES256', 'ec1'), 'alice@example.com', ['analysts', 'oncall']);
ok('eddsa', await sign(ed.privateKey, 'EdDSA', 'ed1'), 'alice@example.com', ['analysts', 'oncall']);
ok('eddsa without kid (only EdDSA key)', await sign(ed.privateKey, 'EdDSA', null), 'alice@example.com', ['analysts', 'oncall']);
ok('audience array', await sign(rsa.privateKey, 'RS256', 'rsa1', { aud: ['other', AUD] }), 'alice@example.com', ['analysts', 'oncall']);
ok('sub when no email', await sign(ec.privateKey, 'ES256', 'ec1', { email: undefined }), 'u-123', ['analysts', 'oncall']);
ok('no groups claim', await sign(ec.privateKey, 'ES256', 'ec1', { groups: undefined }), 'alice@example.com', []);
ok('single group string', await sign(ec.privateKey, 'ES256', 'ec1', { groups: 'dba' }), 'alice@example.com', ['dba']);
ok('expired within clock skew', await sign(rsa.privateKey, 'RS256', 'rsa1', { exp: now - 30 }), 'alice@example.com', ['analysts', 'oncall']);
ok('nbf within clock skew', await sign(rsa.privateKey, 'RS256', 'rsa1', { nbf: now + 30 }), 'alice@example.com', ['analysts', 'oncall']);
ok('email_verified true', await sign(ec.privateKey, 'ES256', 'ec1', { email_verified: true }), 'alice@example.com', ['analysts', 'oncall']);
ok('email_verified false but no email (identity from sub)', await sign(ec.privateKey, 'ES256', 'ec1', { email: undefined, email_verified: false }), 'u-123', ['analysts', 'oncall']);
ok('on behalf of (act)', await sign(ec.privateKey, 'ES256', 'ec1', { act: { sub: 'agent-7' }, azp: 'claude-desktop' }), 'alice@example.com', ['analysts', 'oncall'], { actors: ['agent-7'], client_id: 'claude-desktop' });
ok('on behalf of, a chain', await sign(ec.privateKey, 'ES256', 'ec1', { act: { sub: 'agent-7', act: { sub: 'orchestrator' } }, client_id: 'svc' }), 'alice@example.com', ['analysts', 'oncall'], { actors: ['agent-7', 'orchestrator'], client_id: 'svc' });
ok('repeated names in different objects', rs256Text('{"alg":"RS256","kid":"rsa1"}', `${claimsText},"act":{"sub":"agent-7","act":{"sub":"other"}}}`), 'alice@example.com', ['analysts', 'oncall'], { actors: ['agent-7', 'other'] });

bad('claims repeat email', rs256Text('{"alg":"RS256","kid":"rsa1"}', `${claimsText},"email":"admin@example.com"}`), 'repeat');
bad('claims repeat groups', rs256Text('{"alg":"RS256","kid":"rsa1"}', `${claimsText},"groups":["dba"]}`), 'repeat');
bad('act repeats sub', rs256Text('{"alg":"RS256","kid":"rsa1"}', `${claimsText},"act":{"sub":"agent-7","sub":"root"}}`), 'repeat');
bad('repeat inside an array of objects', rs256Text('{"alg":"RS256","kid":"rsa1"}', `${claimsText},"x":[{"a":1,"a":2}]}`), 'repeat');
bad('header repeats kid', rs256Text('{"alg":"RS256","kid":"rsa1","kid":"rsa2"}', JSON.stringify(claims)), 'repeat');
bad('header repeats alg', rs256Text('{"alg":"RS256","alg":"none","kid":"rsa1"}', JSON.stringify(claims)), 'repeat');
bad('email_verified false', await sign(rsa.privateKey, 'RS256', 'rsa1', { email_verified: false }), 'not verified');
bad('email_verified "false"', await sign(rsa.privateKey, 'RS256', 'rsa1', { email_verified: 'false' }), 'not verified');
bad('email_verified null', await sign(rsa.privateKey, 'RS256', 'rsa1', { email_verified: null }), 'not verified');
bad('act not an object', await sign(rsa.privateKey, 'RS256', 'rsa1', { act: 'agent-7' }), 'act');
bad('act without sub', await sign(rsa.privateKey, 'RS256', 'rsa1', { act: { client_id: 'x' } }), 'act');
bad('act sub with a newline', await sign(rsa.privateKey, 'RS256', 'rsa1', { act: { sub: 'agent\nFATAL' } }), 'act');
bad('nested act not an object', await sign(rsa.privateKey, 'RS256', 'rsa1', { act: { sub: 'a', act: [1] } }), 'act');
{
  let chain = { sub: 'a9' };
  for (let i = 8; i >= 0; --i) chain = { sub: `a${i}`, act: chain };
  bad('act chain too long', await sign(rsa.privateKey, 'RS256', 'rsa1', { act: chain }), 'longer');
}
bad('azp not a string', await sign(rsa.privateKey, 'RS256', 'rsa1', { azp: 7 }), 'azp');

bad('alg none, empty signature', raw({ alg: 'none' }, claims), 'base64url');
bad('alg none with a signature', raw({ alg: 'none' }, claims, 'AAAA'), 'not accepted');
bad('alg None (case)', raw({ alg: 'None', kid: 'rsa1' }, claims, 'AAAA'), 'not accepted');
bad('HS256 keyed with the RSA public key JWK (alg confusion)', hs256({ alg: 'HS256', kid: 'rsa1' }, claims, JSON.stringify(rsaJwk)), 'not accepted');
bad('HS256 keyed with the RSA modulus (alg confusion)', hs256({ alg: 'HS256', kid: 'rsa1' }, claims, Buffer.from(rsaJwk.n, 'base64url')), 'not accepted');
bad('HS256 with the oct key in the JWKS', hs256({ alg: 'HS256', kid: 'hmac1' }, claims, 'shared-secret-that-must-never-work'), 'not accepted');
bad('unknown kid', await sign(rsa.privateKey, 'RS256', 'nope'), 'kid');
bad('kid of an RSA key on an ES256 token', await sign(ec.privateKey, 'ES256', 'rsa1'), 'kid');
bad('kid of an encryption-only key', await sign(rsa.privateKey, 'RS256', 'enc1'), 'kid');
bad('ES384 (unsupported curve)', await sign(ec384.privateKey, 'ES384', 'ec384'), 'not accepted');
bad('RS256 without kid and two RSA keys', await sign(rsa.privateKey, 'RS256', null), 'no kid');
bad('signed by an attacker key with a trusted kid', await sign(attacker.privateKey, 'RS256', 'rsa1'), 'signature');
bad('signed by rsa2 but claims kid rsa1', await sign(rsa2.privateKey, 'RS256', 'rsa1'), 'signature');
{
  const t = (await sign(rsa.privateKey, 'RS256', 'rsa1')).split('.');
  const p = JSON.parse(Buffer.from(t[1], 'base64url'));
  p.groups = ['admins'];
  bad('tampered payload (groups)', `${t[0]}.${b64(JSON.stringify(p))}.${t[2]}`, 'signature');
  p.groups = ['analysts', 'oncall'];
  p.exp = now + 10 * 365 * 86400;
  bad('tampered payload (exp)', `${t[0]}.${b64(JSON.stringify(p))}.${t[2]}`, 'signature');
  bad('tampered header (kid swapped)', `${b64(JSON.stringify({ alg: 'RS256', kid: 'rsa2' }))}.${t[1]}.${t[2]}`, 'signature');
  bad('signature truncated', `${t[0]}.${t[1]}.${Buffer.from(t[2], 'base64url').subarray(0, 250).toString('base64url')}`, 'signature');
  bad('standard base64 alphabet', `${t[0]}.${t[1]}.${t[2].replace(/-/g, '+').replace(/_/g, '/')}+/`, 'base64url');
  bad('base64 padding', `${t[0]}==.${t[1]}.${t[2]}`, 'base64url');
  bad('two parts', `${t[0]}.${t[1]}`, 'compact');
  bad('four parts', `${t[0]}.${t[1]}.${t[2]}.${t[2]}`, 'compact');
  bad('empty signature part', `${t[0]}.${t[1]}.`, 'base64url');
  bad('whitespace inside', `${t[0]}.${t[1]} .${t[2]}`, 'base64url');
}
{
  const t = (await sign(ec.privateKey, 'ES256', 'ec1')).split('.');
  const sig = Buffer.from(t[2], 'base64url');
  const flipped = Buffer.from(sig);
  flipped[10] ^= 1;
  bad('es256 signature bit flip', `${t[0]}.${t[1]}.${flipped.toString('base64url')}`, 'signature');
  bad('es256 signature with extra bytes', `${t[0]}.${t[1]}.${Buffer.concat([sig, Buffer.from([0])]).toString('base64url')}`, 'signature');
}
bad('expired', await sign(rsa.privateKey, 'RS256', 'rsa1', { exp: now - 3600 }), 'expired');
bad('no exp', await sign(rsa.privateKey, 'RS256', 'rsa1', { exp: undefined }), 'exp');
bad('exp as a string', await sign(rsa.privateKey, 'RS256', 'rsa1', { exp: String(now + 3600) }), 'exp');
bad('future nbf', await sign(rsa.privateKey, 'RS256', 'rsa1', { nbf: now + 3600 }), 'nbf');
bad('future iat', await sign(rsa.privateKey, 'RS256', 'rsa1', { iat: now + 3600 }), 'iat');
bad('wrong audience', await sign(rsa.privateKey, 'RS256', 'rsa1', { aud: 'someone-else' }), 'audience');
bad('no audience', await sign(rsa.privateKey, 'RS256', 'rsa1', { aud: undefined }), 'audience');
bad('wrong issuer', await sign(rsa.privateKey, 'RS256', 'rsa1', { iss: 'https://evil.example.com' }), 'issuer');
bad('no issuer', await sign(rsa.privateKey, 'RS256', 'rsa1', { iss: undefined }), 'issuer');
bad('no identity', await sign(rsa.privateKey, 'RS256', 'rsa1', { email: undefined, sub: undefined }), 'identity');
bad('identity with a newline', await sign(rsa.privateKey, 'RS256', 'rsa1', { email: 'alice@example.com\nFATAL: fake log line' }), 'identity');
bad('groups not strings', await sign(rsa.privateKey, 'RS256', 'rsa1', { groups: [1, 2] }), 'groups');
bad('groups an object', await sign(rsa.privateKey, 'RS256', 'rsa1', { groups: { admin: true } }), 'groups');
bad('crit header', await sign(rsa.privateKey, 'RS256', 'rsa1', {}, { crit: ['b64'], b64: true }), 'crit');
bad('huge token', await sign(rsa.privateKey, 'RS256', 'rsa1', { pad: 'x'.repeat(20000) }), 'too large');
bad('payload not JSON', await new jose.CompactSign(Buffer.from('not json at all')).setProtectedHeader({ alg: 'RS256', kid: 'rsa1' }).sign(rsa.privateKey), 'payload');
bad('payload a JSON array', await new jose.CompactSign(Buffer.from('[1,2,3]')).setProtectedHeader({ alg: 'RS256', kid: 'rsa1' }).sign(rsa.privateKey), 'payload');
bad('header not JSON', `${b64('{alg:RS256')}.${b64(JSON.stringify(claims))}.AAAA`, 'header');
bad('empty token', '', 'compact');
bad('garbage', 'hello world', 'compact');

writeFileSync(process.argv[2], JSON.stringify({ now, issuer: ISS, audience: AUD, jwks, cases }, null, 1));
console.log(`minted ${cases.length} cases`);
