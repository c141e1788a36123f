"""People sign in: OpenID Connect for a person at a terminal (`kubegate login`).

The authorization code flow with PKCE and a loopback redirect (RFC 7636, RFC 8252), or the
device authorization grant (RFC 8628); the ID token checked on receipt against the provider's
keys; a per-(issuer, client) token cache that refreshes before the ID token expires.

Layout (pure rules first, I/O at the edges):
- `authorize`: PKCE, state and nonce, the authorization URL, the callback's checks (pure);
- `discovery`: which issuer URLs are allowed, the discovery document's checks (pure);
- `tokens`: token endpoint forms and replies (pure); `idtoken`: the ID token's checks (pure);
- `device`: the device grant's polling rules, time injected;
- `store`: the login cache folder and files; `settings`: the validated flags;
- `transport`: HTTPS GET/POST with bounded reads; `loopback`: the one-callback listener;
- `session`: the use case (cached, refreshed, or signed in); `source`: a subject-token source
  for the exchange that yields a fresh ID token.
"""
