// The demo's local identity provider: an ES256 key pair, its JWKS (what pgwarden trusts), and
// tokens it mints for the demo's people. Uses `jose` from the integration tests' node_modules.
//   node scripts/demo_idp.mjs init DIR
//   node scripts/demo_idp.mjs mint DIR EMAIL GROUP[,GROUP...] AUDIENCE [TTL, default 8h]
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync, chmodSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(root, 'tests/integration/node/package.json'));
const jose = require('jose');

export const ISSUER = 'https://idp.pgwarden.demo';
const [cmd, dir, ...rest] = process.argv.slice(2);

if (cmd === 'init') {
  const { publicKey, privateKey } = await jose.generateKeyPair('ES256', { extractable: true });
  const priv = join(dir, 'idp-private.jwk');
  writeFileSync(priv, JSON.stringify(await jose.exportJWK(privateKey)));
  chmodSync(priv, 0o600);
  const pub = { ...(await jose.exportJWK(publicKey)), kid: 'demo-1', alg: 'ES256', use: 'sig' };
  writeFileSync(join(dir, 'jwks.json'), JSON.stringify({ keys: [pub] }, null, 2));
} else if (cmd === 'mint') {
  const [email, groups, audience, ttl = '8h'] = rest;
  const key = await jose.importJWK(JSON.parse(readFileSync(join(dir, 'idp-private.jwk'), 'utf8')), 'ES256');
  const token = await new jose.SignJWT({ email, groups: groups.split(',') })
    .setProtectedHeader({ alg: 'ES256', kid: 'demo-1' }).setIssuer(ISSUER).setAudience(audience)
    .setSubject(email).setIssuedAt().setExpirationTime(ttl).sign(key);
  process.stdout.write(token);
} else {
  process.stderr.write('usage: demo_idp.mjs init DIR | mint DIR EMAIL GROUPS AUDIENCE [TTL]\n');
  process.exit(2);
}
