package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
	"time"
)

var b64 = base64.RawURLEncoding

func loadJWKS(path string) (map[string]*rsa.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the JWKS: %w", err)
	}
	var set struct {
		Keys []struct{ Kty, Kid, N, E string } `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("%s is not a JWKS: %w", path, err)
	}
	keys := map[string]*rsa.PublicKey{}
	for _, k := range set.Keys {
		if k.Kty != "RSA" {
			continue
		}
		n, errN := b64.DecodeString(k.N)
		e, errE := b64.DecodeString(k.E)
		if errN != nil || errE != nil {
			return nil, fmt.Errorf("key %q: bad n or e", k.Kid)
		}
		keys[k.Kid] = &rsa.PublicKey{N: new(big.Int).SetBytes(n),
			E: int(new(big.Int).SetBytes(e).Int64())}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s holds no RSA key", path)
	}
	return keys, nil
}

var errToken = errors.New("invalid subject token")

// verifyRS256 checks the signature of a compact JWS with the key its kid names and returns
// its claims.
func verifyRS256(token string, keys map[string]*rsa.PublicKey) (map[string]any, error) {
	first := strings.IndexByte(token, '.')
	last := strings.LastIndexByte(token, '.')
	if first < 0 || last <= first {
		return nil, errToken
	}
	header, err := b64.DecodeString(token[:first])
	if err != nil {
		return nil, errToken
	}
	var h struct{ Alg, Kid string }
	if json.Unmarshal(header, &h) != nil || h.Alg != "RS256" {
		return nil, errToken
	}
	key, ok := keys[h.Kid]
	if !ok {
		return nil, errToken
	}
	signature, err := b64.DecodeString(token[last+1:])
	if err != nil {
		return nil, errToken
	}
	digest := sha256.Sum256([]byte(token[:last]))
	if rsa.VerifyPKCS1v15(key, crypto.SHA256, digest[:], signature) != nil {
		return nil, errToken
	}
	payload, err := b64.DecodeString(token[first+1 : last])
	if err != nil {
		return nil, errToken
	}
	var claims map[string]any
	if json.Unmarshal(payload, &claims) != nil {
		return nil, errToken
	}
	return claims, nil
}

type signer struct {
	key *ecdsa.PrivateKey
	kid string
}

func newSigner() (*signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return &signer{key: key, kid: randomID()}, nil
}

// signES256 returns a compact JWS of claims signed with the signer's P-256 key.
func (s *signer) signES256(claims map[string]any) (string, error) {
	header, _ := json.Marshal(map[string]string{"alg": "ES256", "typ": "JWT", "kid": s.kid})
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	input := b64.EncodeToString(header) + "." + b64.EncodeToString(payload)
	digest := sha256.Sum256([]byte(input))
	r, sv, err := ecdsa.Sign(rand.Reader, s.key, digest[:])
	if err != nil {
		return "", err
	}
	signature := make([]byte, 64)
	r.FillBytes(signature[:32])
	sv.FillBytes(signature[32:])
	return input + "." + b64.EncodeToString(signature), nil
}

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func numericClaim(claims map[string]any, name string) (time.Time, bool) {
	value, ok := claims[name].(float64)
	if !ok {
		return time.Time{}, false
	}
	return time.Unix(int64(value), 0), true
}
