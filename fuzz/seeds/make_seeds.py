#!/usr/bin/env python3
"""Writes the seed corpora into fuzz/corpus-full/<target>/ (real-shaped inputs: session tokens,
the open-redirect corpus, upstream role-mapping examples, MockIdp-shaped IdP answers).

Run from the repository root: python3 fuzz/seeds/make_seeds.py
Needs the `cryptography` package (for real RSA / EC / Ed25519 JWKs)."""
import base64, hashlib, hmac, json, os, re, urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "fuzz", "corpus-full")


def write(target, items):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    for item in items:
        data = item if isinstance(item, bytes) else item.encode()
        name = hashlib.sha1(data).hexdigest()
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def session_token(secret, claims):
    h = b64u(json.dumps({"typ": "JWT", "alg": "HS256"}, separators=(",", ":")).encode())
    p = b64u(json.dumps(claims, separators=(",", ":")).encode())
    key = hmac.new(secret, b"tower-sso/v1/session", hashlib.sha256).digest()
    s = b64u(hmac.new(key, f"{h}.{p}".encode(), hashlib.sha256).digest())
    return f"{h}.{p}.{s}"


claims = {
    "user_id": "alice", "key": "k" * 32, "user_email": "alice@example.com",
    "user_role": "proxy_admin", "login_method": "sso", "premium_user": False,
    "auth_header_name": "Authorization", "disabled_non_admin_personal_key_creation": False,
    "server_root_path": "", "name": "Alice", "teams": ["t1", "t2"], "provider": "generic",
    "attrs": {"department": "R&D"}, "jti": "k" * 32, "iat": 1764000000, "exp": 2079360000,
    "iss": "tower-sso", "aud": "tower-sso:session",
}
tokens = [
    session_token(b"0123456789abcdef0123456789abcdef", claims),
    session_token(b"another secret, sixteen bytes+", dict(claims, user_role="internal_user", teams=[], attrs={})),
]
none_token = b64u(b'{"alg":"none","typ":"JWT"}') + "." + tokens[0].split(".")[1] + "."

# 1a. Cookie headers (lines; "A:" = Authorization).
write("session_cookie", [
    "token=" + tokens[0],
    "a=1; token=abc; b=2",
    "tokenx=1; token=abc",
    "xtoken=1",
    'token="q"',
    "a=1;token=;token=x",
    " \ttoken=v  ; b=2",
    "token=a\ntoken=b",
    "token=a\ntoken=a",
    "a=1\nA:Bearer " + tokens[0],
    "A:bearer   xyz  ",
    "A:Basic dXNlcjpwYXNz",
    "token=" + tokens[0] + "; token=" + tokens[1],
    "sid=" + "x" * 31 + ";token=" + "y" * 33 + ";b=1",
    b"lang=fr\xe9; token=abc",
    b"token=\xff\xfe\ntoken=abc",
    "_ga=GA1.2.3; token=" + tokens[0] + "; theme=dark",
])

# 1b. Tokens: mode byte + token, and mutation modes over issued tokens.
write("session_verify", [
    b"\x00" + t.encode() for t in tokens + [none_token, "a.b.c", "", tokens[0][:-3]]
] + [b"\x01\x00", b"\x01\x01x", b"\x02\x00\x05A", b"\x03\x00\x00\x10.", b"\x03\x01\x01\x00"])

# 2. Callback queries.
write("callback_query", [
    "code=4%2F0AX4XfWh&state=AbC123_-&iss=https%3A%2F%2Fidp.example.com",
    "code=abc&state=xyz",
    "state=a&code=b&state=c",
    "state=a&st%61te=b",
    "error=access_denied&error_description=The+user+denied+access&state=s",
    "return_to=%2Fui%2F%3Flogin%3Dsuccess",
    "a&b=&=c&&d==e",
    "%zz=%&+=+",
    "&".join(f"k{i}=v{i}" for i in range(64)),
    "&".join(f"k{i}=v{i}" for i in range(65)),
    "q=%F0%9F%98%80&k=%C3%A9",
])

# 3. Redirect targets: the open-redirect corpus (as written and query-unescaped), and good ones.
lines = open(os.path.join(ROOT, "tests", "data", "openredirects.txt"), encoding="utf-8").read().splitlines()
redirects = []
for l in lines:
    redirects.append(l)
    redirects.append(urllib.parse.unquote_plus(l, errors="surrogateescape").encode("utf-8", "surrogateescape"))
redirects += [
    "/", "/ui/?login=success", "/a/b?c=d#e", "/a/..b",
    "https://www.whitelisteddomain.tld/x", "HTTPS://WWW.WhitelistedDomain.tld/x?y#z",
    "https://sub.example.com/", "https://app.test:8443/", "https://any.test:1234/",
    "http://127.0.0.1:3000/cb", "http://[::1]:8080/", "https://www.whitelisteddomain.tld:443/",
    "example.com,.example.org,*.x.test:8443,[::1]:*",
]
write("redirect", redirects)

# 4. Role mappings: upstream examples (reference/litellm-sso.md) and parser edge cases.
write("role_map", [
    "{'proxy_admin': ['custom-admin-group'], 'internal_user': ['custom-user-group'], 'proxy_admin_viewer': ['custom-viewer-group']}",
    '{"proxy_admin":["g"]}',
    "{'proxy_admin': ['keycloak-admins'], 'internal_user': ['developers']}",
    "{'proxy_admin': ['admins'], 'proxy_admin_viewer': ['auditors'], 'internal_user': ['devs']}",
    "{'org_admin': ['x']}",
    "{}",
    r"""{'proxy_admin': ["a\"b", 'c\'d'], "internal_user": 'x\\y', }""",
    '{"internal_user_viewer": "single", "PROXY_ADMIN": [], "proxy_admin": ["b"]}',
    r'{"proxy_admin": ["\u00e9\ud83d\ude00\n"]}',
    "{'proxy_admin': None}",
    "{'proxy_admin': null}",
    "{'internal_user_view_only': ['g']}",
    "{'proxy_admin': ['g'],,}",
])

# 5a. Token endpoint answers (first byte: status; 0 = 200, 11 = 400, 14 = 500).
ok = {"access_token": "at-" + "A" * 40, "token_type": "Bearer", "expires_in": 3600,
      "id_token": tokens[0], "refresh_token": "rt-" + "B" * 30, "scope": "openid email profile"}
write("token_response", [b"\x00" + json.dumps(x).encode() for x in [
    ok,
    {k: v for k, v in ok.items() if k != "id_token"},
    dict(ok, id_token=None, expires_in="3600", ext_expires_in=3600, foo_key="x", not_before=1),
    dict(ok, id_token=""),
    {"token_type": "Bearer"},
    {"error": "invalid_grant", "error_description": "Code already used"},
    {"error": None, "access_token": "x"},
    [1, 2],
]] + [b"\x00<html>this is not JSON", b"\x0b" + json.dumps({"error": "invalid_grant"}).encode(),
      b"\x0e" + json.dumps({"error": "server_error"}).encode(), b"\x0c<html>"])

# 5b. JWKS: MockIdp's shape (RSA), plus EC, Ed25519, oct and odd keys.
from cryptography.hazmat.primitives.asymmetric import rsa, ec, ed25519
from cryptography.hazmat.primitives import serialization


def ib(n):
    return b64u(n.to_bytes((n.bit_length() + 7) // 8, "big"))


rsa_pub = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_numbers()
rsa_jwk = {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": "mock-1", "n": ib(rsa_pub.n), "e": ib(rsa_pub.e)}
ec_keys = []
for curve, crv, size in [(ec.SECP256R1(), "P-256", 32), (ec.SECP384R1(), "P-384", 48)]:
    pn = ec.generate_private_key(curve).public_key().public_numbers()
    ec_keys.append({"kty": "EC", "crv": crv, "kid": "ec-" + crv,
                    "x": b64u(pn.x.to_bytes(size, "big")), "y": b64u(pn.y.to_bytes(size, "big"))})
ed = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
    serialization.Encoding.Raw, serialization.PublicFormat.Raw)
ed_jwk = {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": b64u(ed), "alg": "EdDSA"}
oct_jwk = {"kty": "oct", "k": b64u(b"secret"), "kid": "hmac", "alg": "HS256"}
write("jwks", [json.dumps(x) for x in [
    {"keys": [rsa_jwk]},
    {"keys": [dict(rsa_jwk, kid=None)]},
    {"keys": [rsa_jwk, dict(rsa_jwk, kid="mock-2")]},
    {"keys": [dict(rsa_jwk, use="enc"), dict(rsa_jwk, key_ops=["verify"]), dict(rsa_jwk, key_ops=["sign"])]},
    {"keys": ec_keys + [ed_jwk, oct_jwk]},
    {"keys": [dict(ec_keys[0], alg="ES384"), dict(rsa_jwk, alg="RSA-OAEP")]},
    {"keys": []},
    {"keys": {}},
    {},
]])

# 5c. Discovery documents (MockIdp's shape).
iss = "https://idp.example.com"
doc = {
    "issuer": iss, "authorization_endpoint": iss + "/authorize", "token_endpoint": iss + "/token",
    "userinfo_endpoint": iss + "/userinfo", "jwks_uri": iss + "/jwks", "end_session_endpoint": iss + "/logout",
    "response_types_supported": ["code"], "response_modes_supported": ["query"],
    "grant_types_supported": ["authorization_code"], "subject_types_supported": ["public"],
    "id_token_signing_alg_values_supported": ["RS256"], "code_challenge_methods_supported": ["S256"],
    "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
    "authorization_response_iss_parameter_supported": True,
}
write("discovery", [json.dumps(x) for x in [
    doc,
    dict(doc, issuer=iss + "/"),
    dict(doc, issuer="https://evil.example.com"),
    {"issuer": iss, "authorization_endpoint": "a", "token_endpoint": "t"},
    {"issuer": iss, "token_endpoint": "t"},
    dict(doc, jwks_uri=None, code_challenge_methods_supported="S256"),
    [1, 2],
]] + ["<html>"])
print("seeds written to", OUT)
