// A real OpenID Connect provider (panva's oidc-provider) on loopback, for
// Keel's OAuth tests (tests/api/oauth.rs). One confidential client with PKCE
// required, two static accounts, and a minimal login form in place of
// devInteractions (it checks the password; consent is granted for this
// first-party client). It prints one JSON line when ready and one per token
// endpoint outcome, and exits when its standard input closes, so it never
// outlives the test that started it.
//
//   node provider.js <port>
//
// Environment (all optional but the redirect URI):
//   OIDC_REDIRECT_URI     the client's one redirect URI (Keel's callback)
//   OIDC_ISSUER           default http://127.0.0.1:<port> (set it when a proxy fronts the provider)
//   OIDC_CLIENT_ID        default "keel"
//   OIDC_CLIENT_SECRET    default "keel-test-secret"
//   OIDC_CODE_TTL         authorization code lifetime in seconds, default 60
//   OIDC_CLAIMS_IN_USERINFO=1  keep email/profile claims out of the id_token
//                         (OpenID's default when an access token is issued)

import http from 'node:http';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.argv[2] ?? process.env.OIDC_PORT);
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: node provider.js <port>');
  process.exit(2);
}
const redirectUri = process.env.OIDC_REDIRECT_URI;
if (!redirectUri) {
  console.error('OIDC_REDIRECT_URI is required');
  process.exit(2);
}
const issuer = process.env.OIDC_ISSUER ?? `http://127.0.0.1:${port}`;

const ACCOUNTS = {
  ada: { password: 'ada-password', email: 'ada@example.com', email_verified: true, name: 'Ada Lovelace' },
  eve: { password: 'eve-password', email: 'eve@example.com', email_verified: false, name: 'Eve Unverified' },
};

const signingKey = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });

const provider = new Provider(issuer, {
  clients: [{
    client_id: process.env.OIDC_CLIENT_ID ?? 'keel',
    client_secret: process.env.OIDC_CLIENT_SECRET ?? 'keel-test-secret',
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  pkce: { required: () => true },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  conformIdTokenClaims: process.env.OIDC_CLAIMS_IN_USERINFO === '1',
  async findAccount(ctx, sub) {
    const account = ACCOUNTS[sub];
    if (!account) return undefined;
    return {
      accountId: sub,
      async claims() {
        return { sub, email: account.email, email_verified: account.email_verified, name: account.name };
      },
    };
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  features: { devInteractions: { enabled: false } },
  jwks: { keys: [{ ...signingKey, kid: 'test-rsa-1', use: 'sig', alg: 'RS256' }] },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  ttl: {
    AuthorizationCode: Number(process.env.OIDC_CODE_TTL ?? 60),
    AccessToken: 600,
    IdToken: 600,
    Grant: 600,
    Interaction: 600,
    Session: 600,
  },
  async renderError(ctx, out) {
    ctx.type = 'json';
    ctx.body = out;
  },
});

// Token endpoint outcomes, with the reason oidc-provider keeps to itself
// (the client only sees "grant request is invalid"), so tests can tell an
// expired code from a PKCE mismatch.
const report = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);
provider.on('grant.success', () => report({ event: 'grant.success' }));
provider.on('grant.error', (ctx, err) => report({ event: 'grant.error', error: err.error, detail: err.error_detail }));

const page = (uid, message = '') => `<!doctype html>
<title>Sign in</title>
<p>${message}</p>
<form method="post" action="/interaction/${uid}/login">
  <input name="login" autofocus> <input name="password" type="password">
  <button type="submit">Sign in</button>
</form>
<a href="/interaction/${uid}/abort">Cancel</a>
`;

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

async function grantConsent(details) {
  const { prompt, params, session, grantId } = details;
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
  if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
  return grant.save();
}

async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new Error('interaction mismatch');
  if (action === '/abort') {
    return provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'End-User aborted interaction' }, { mergeWithLastSubmission: false });
  }
  if (details.prompt.name === 'consent') {
    // First-party client: consent is implied once signed in.
    const grantId = await grantConsent(details);
    return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }
  if (action === '/login' && req.method === 'POST') {
    const form = await readForm(req);
    const account = ACCOUNTS[form.get('login')];
    if (!account || account.password !== form.get('password')) {
      res.writeHead(401, { 'content-type': 'text/html' });
      return res.end(page(uid, 'Wrong login or password.'));
    }
    return provider.interactionFinished(req, res, { login: { accountId: form.get('login') } }, { mergeWithLastSubmission: false });
  }
  res.writeHead(200, { 'content-type': 'text/html' });
  return res.end(page(uid));
}

const handle = provider.callback();
const server = http.createServer((req, res) => {
  const match = new URL(req.url, issuer).pathname.match(/^\/interaction\/([^/]+)(\/login|\/abort)?$/);
  if (!match) return handle(req, res);
  return interaction(req, res, match[1], match[2]).catch((err) => {
    res.writeHead(500, { 'content-type': 'text/plain' });
    res.end(String(err));
  });
});

server.listen(port, '127.0.0.1', () => report({ ready: true, issuer, port }));
process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));
process.stdin.resume();
