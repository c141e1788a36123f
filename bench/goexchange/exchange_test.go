package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

const testIssuer = "https://issuer.test"

func mint(t *testing.T, key *rsa.PrivateKey, alg, kid string, claims map[string]any) string {
	t.Helper()
	header, _ := json.Marshal(map[string]string{"alg": alg, "kid": kid, "typ": "JWT"})
	payload, _ := json.Marshal(claims)
	input := b64.EncodeToString(header) + "." + b64.EncodeToString(payload)
	digest := sha256.Sum256([]byte(input))
	signature, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + b64.EncodeToString(signature)
}

func goodClaims(now time.Time) map[string]any {
	return map[string]any{"iss": testIssuer, "aud": "kubegate", "sub": "repo:octo-org/web",
		"iat": now.Unix(), "nbf": now.Unix() - 5, "exp": now.Unix() + 300, "jti": "j-1",
		"ref": "refs/heads/main"}
}

func newTestExchanger(t *testing.T) (*exchanger, *rsa.PrivateKey, string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := newSigner()
	if err != nil {
		t.Fatal(err)
	}
	auditPath := filepath.Join(t.TempDir(), "audit.log")
	audit, err := os.OpenFile(auditPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { audit.Close() })
	ex := &exchanger{keys: map[string]*rsa.PublicKey{"k1": &key.PublicKey}, issuer: testIssuer,
		audience: "kubegate", conditions: map[string]string{"ref": "refs/heads/main"},
		signer: signer, audit: audit, leeway: 30 * time.Second, lifetime: 15 * time.Minute}
	return ex, key, auditPath
}

func request(token string) []byte {
	return protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), token)
}

func TestExchangeIssuesAnES256CredentialAndWritesOneAuditLineWithoutTheToken(t *testing.T) {
	ex, key, auditPath := newTestExchanger(t)
	token := mint(t, key, "RS256", "k1", goodClaims(time.Now()))
	response, err := ex.exchange(nil, request(token))
	if err != nil {
		t.Fatalf("exchange refused a good token: %v", err)
	}
	credential, _ := protowire.ConsumeString(response[1:])
	parts := strings.Split(credential, ".")
	if len(parts) != 3 {
		t.Fatalf("credential is not a compact JWS: %q", credential)
	}
	signature, _ := b64.DecodeString(parts[2])
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	r, s := new(big.Int).SetBytes(signature[:32]), new(big.Int).SetBytes(signature[32:])
	if !ecdsa.Verify(&ex.signer.key.PublicKey, digest[:], r, s) {
		t.Fatal("the credential's ES256 signature does not verify")
	}
	audit, _ := os.ReadFile(auditPath)
	if lines := strings.Count(string(audit), "\n"); lines != 1 {
		t.Fatalf("want 1 audit line, got %d", lines)
	}
	if strings.Contains(string(audit), token) || strings.Contains(string(audit), credential) {
		t.Fatal("a token reached the audit line")
	}
}

func TestExchangeRefusesBadTokens(t *testing.T) {
	ex, key, auditPath := newTestExchanger(t)
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	now := time.Now()
	with := func(name string, value any) map[string]any {
		claims := goodClaims(now)
		claims[name] = value
		return claims
	}
	good := mint(t, key, "RS256", "k1", goodClaims(now))
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + b64.EncodeToString([]byte(`{"iss":"`+testIssuer+`"}`)) + "." + parts[2]
	cases := map[string]struct {
		token string
		code  codes.Code
	}{
		"empty":            {"", codes.InvalidArgument},
		"not a JWS":        {"abc", codes.Unauthenticated},
		"tampered payload": {tampered, codes.Unauthenticated},
		"other key":        {mint(t, other, "RS256", "k1", goodClaims(now)), codes.Unauthenticated},
		"unknown kid":      {mint(t, key, "RS256", "k9", goodClaims(now)), codes.Unauthenticated},
		"alg not RS256":    {mint(t, key, "RS512", "k1", goodClaims(now)), codes.Unauthenticated},
		"wrong issuer":     {mint(t, key, "RS256", "k1", with("iss", "https://evil")), codes.Unauthenticated},
		"wrong audience":   {mint(t, key, "RS256", "k1", with("aud", []string{"other"})), codes.Unauthenticated},
		"expired":          {mint(t, key, "RS256", "k1", with("exp", now.Unix()-60)), codes.Unauthenticated},
		"not yet valid":    {mint(t, key, "RS256", "k1", with("nbf", now.Unix()+600)), codes.Unauthenticated},
		"mapping mismatch": {mint(t, key, "RS256", "k1", with("ref", "refs/heads/dev")), codes.PermissionDenied},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ex.exchange(nil, request(c.token))
			if got := status.Code(err); got != c.code {
				t.Fatalf("want %s, got %s (%v)", c.code, got, err)
			}
		})
	}
	audit, _ := os.ReadFile(auditPath)
	if strings.Contains(string(audit), `"allow"`) {
		t.Fatal("a refused token was audited as allowed")
	}
}

func TestSubjectTokenSkipsOtherFields(t *testing.T) {
	message := protowire.AppendTag(nil, 3, protowire.BytesType)
	message = protowire.AppendString(message, "role")
	message = append(message, request("tok")...)
	if token, ok := subjectToken(message); !ok || token != "tok" {
		t.Fatalf("got %q %v", token, ok)
	}
	if _, ok := subjectToken([]byte{0xff}); ok {
		t.Fatal("a malformed message gave a token")
	}
}
