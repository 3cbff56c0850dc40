// End-to-end test fixture: a real, certified OpenID provider (panva/oidc-provider)
// on loopback, with a non-interactive login so a plain HTTP client can sign in.
//
// Environment:
//   PORT           TCP port on 127.0.0.1 (0 or unset = pick a free one)
//   CLIENT_ID      confidential client id        (required)
//   CLIENT_SECRET  its secret (client_secret_basic) (required)
//   REDIRECT_URI   its only redirect URI          (required)
//   USER_SUB       the one account's subject      (default "e2e-user")
//   USER_EMAIL     its email                      (default "e2e.user@example.com")
//   USER_NAME      its name                       (default "E2E User")
//   USER_USERNAME  its preferred_username         (default "e2e-user")
//   BACKCHANNEL_LOGOUT_URI  when set: the backchannelLogout feature is on, and the client
//                  registers this URI (with backchannel_logout_session_required), so
//                  ending the session at `/session/end` posts a logout token to it
//
// Protocol with the parent process: exactly one line `READY <issuer>` on stdout once
// listening (everything else goes to stderr); exits when stdin closes or on SIGTERM/SIGINT.
//
// Login: `GET /interaction/:uid` finishes the pending interaction at once: prompt
// `login` signs in USER_SUB, prompt `consent` grants `openid email profile`. A client
// that follows redirects and keeps the provider's cookies ends at
// `303 REDIRECT_URI?code=..&state=..&iss=..`.

import { createServer } from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';

// stdout is reserved for the READY line: oidc-provider prints notices via console.info.
console.log = console.error;
console.info = console.error;

const { default: Provider } = await import('oidc-provider');

function fail(message) {
  process.stderr.write(`oidc-provider fixture: ${message}\n`);
  process.exit(2);
}

function requiredEnv(name) {
  const value = process.env[name];
  if (!value) fail(`environment variable ${name} is required`);
  return value;
}

const CLIENT_ID = requiredEnv('CLIENT_ID');
const CLIENT_SECRET = requiredEnv('CLIENT_SECRET');
const REDIRECT_URI = requiredEnv('REDIRECT_URI');
const USER_SUB = process.env.USER_SUB || 'e2e-user';
const USER_EMAIL = process.env.USER_EMAIL || 'e2e.user@example.com';
const USER_NAME = process.env.USER_NAME || 'E2E User';
const USER_USERNAME = process.env.USER_USERNAME || USER_SUB;
const BACKCHANNEL_LOGOUT_URI = process.env.BACKCHANNEL_LOGOUT_URI || undefined;
const PORT = Number.parseInt(process.env.PORT || '0', 10);
if (!Number.isInteger(PORT) || PORT < 0 || PORT > 65535) fail(`invalid PORT ${process.env.PORT}`);

// Die with the parent: it holds our stdin open for as long as it wants us alive.
const exit = () => process.exit(0);
process.stdin.on('end', exit);
process.stdin.on('close', exit);
process.stdin.on('error', exit);
process.stdin.resume();
process.on('SIGTERM', exit);
process.on('SIGINT', exit);

// Listen first: with PORT=0 the issuer is only known once the port is bound.
const server = createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(PORT, '127.0.0.1', resolve);
}).catch((err) => fail(`cannot listen on 127.0.0.1:${PORT}: ${err.message}`));
const issuer = `http://127.0.0.1:${server.address().port}`;

// A fresh signing key per run (instead of the library's dev keys, which warn).
const signingKey = {
  ...generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }),
  kid: 'e2e-rs256',
  alg: 'RS256',
  use: 'sig',
};

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      redirect_uris: [REDIRECT_URI],
      response_types: ['code'],
      grant_types: ['authorization_code'],
      token_endpoint_auth_method: 'client_secret_basic',
      ...(BACKCHANNEL_LOGOUT_URI
        ? {
            backchannel_logout_uri: BACKCHANNEL_LOGOUT_URI,
            backchannel_logout_session_required: true,
          }
        : {}),
    },
  ],
  // Outgoing requests (the back-channel logout POST) go through a dispatcher that refuses
  // special-use addresses, loopback included (SSRF protection). The relying party under test
  // listens on 127.0.0.1, so this fixture drops that dispatcher and uses plain fetch.
  fetch: (url, { dispatcher: _ssrfGuard, ...options }) => globalThis.fetch(url, options),
  jwks: { keys: [signingKey] },
  // Cookies are plain-http on loopback (oidc-provider only marks them Secure when the
  // request itself is secure); keys make them signed, which silences a warning.
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  // PKCE for every client, not just public ones (v9 only implements S256).
  pkce: { required: () => true },
  // Explicit lifetimes (seconds); the defaults work but print a notice each.
  ttl: {
    AccessToken: 3600,
    AuthorizationCode: 60,
    Grant: 3600,
    IdToken: 3600,
    Interaction: 600,
    Session: 3600,
  },
  scopes: ['openid', 'email', 'profile'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
  },
  features: {
    devInteractions: { enabled: false },
    backchannelLogout: { enabled: Boolean(BACKCHANNEL_LOGOUT_URI) },
  },
  interactions: {
    url: (_ctx, interaction) => `/interaction/${interaction.uid}`,
  },
  async findAccount(_ctx, sub) {
    if (sub !== USER_SUB) return undefined;
    return {
      accountId: USER_SUB,
      async claims() {
        return {
          sub: USER_SUB,
          email: USER_EMAIL,
          email_verified: true,
          name: USER_NAME,
          preferred_username: USER_USERNAME,
        };
      },
    };
  },
});

// Auto-completing interaction endpoint, placed before the provider's own routes.
provider.use(async (ctx, next) => {
  const match = /^\/interaction\/([^/]+)$/.exec(ctx.path);
  if (!match || ctx.method !== 'GET') return next();

  const { req, res } = ctx;
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== match[1]) ctx.throw(400, 'interaction uid mismatch');
  const { prompt, params } = details;

  let result;
  switch (prompt.name) {
    case 'login':
      result = { login: { accountId: USER_SUB } };
      break;
    case 'consent': {
      const accountId = details.session?.accountId;
      if (!accountId) ctx.throw(400, 'consent without a logged-in session');
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId, clientId: params.client_id });
      grant.addOIDCScope('openid email profile');
      const grantId = await grant.save();
      result = { consent: { grantId } };
      break;
    }
    default:
      ctx.throw(400, `unsupported prompt ${prompt.name}`);
  }

  ctx.respond = false; // interactionFinished writes the raw 303 itself.
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
});

provider.on('server_error', (_ctx, err) => console.error('oidc-provider server_error:', err));
provider.on('backchannel.error', (_ctx, err) => console.error('oidc-provider backchannel.error:', err.message));
provider.on('backchannel.success', () => console.error('oidc-provider backchannel.success'));

server.on('request', provider.callback());
process.stdout.write(`READY ${issuer}\n`);
