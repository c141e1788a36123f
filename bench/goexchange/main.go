// Command goexchange is the floor of benchmark 15: the job kubegate's exchange does, written
// plainly in Go, to say what an exchange costs natively.
//
// Per call of /exchanger.v1.ExchangeService/Exchange over TLS gRPC it does what kubegate's
// self-issued exchange does: RS256 verification of the subject token against keys loaded at
// start (a JWKS file), the claim checks (exact iss, aud, exp/nbf/iat with leeway, and
// -require claim=value conditions: the bench's trust mapping), an ES256 signature of a
// short-lived credential, and one audit line appended and fsync'd before the answer.
//
//	goexchange -listen 127.0.0.1:0 -cert tls.crt -key tls.key -jwks jwks.json \
//	    -issuer https://issuer -audience kubegate -require ref=refs/heads/main -audit audit.log
//
// Rules of this program:
//   - it prints "gRPC: HOST:PORT" once it listens (the line kubegate prints), then serves;
//   - the algorithm comes from the key, never from the token header alone (RS256 only);
//   - a refused token gets UNAUTHENTICATED or PERMISSION_DENIED and no audit line is written
//     for it beyond the refusal; tokens never appear in the audit line or on stderr;
//   - an answer is sent only after its audit line is on disk (fsync), as kubegate does.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve gRPC on")
	certFile := flag.String("cert", "", "serving certificate (PEM)")
	keyFile := flag.String("key", "", "serving key (PEM)")
	jwksFile := flag.String("jwks", "", "JWKS of the subject-token issuer (RSA keys)")
	issuer := flag.String("issuer", "", "exact iss of subject tokens")
	audience := flag.String("audience", "", "audience subject tokens must carry")
	auditFile := flag.String("audit", "audit.log", "audit log (appended, fsync'd per line)")
	var require multiFlag
	flag.Var(&require, "require", "claim=value every subject token must hold (repeatable)")
	flag.Parse()
	if err := serve(*listen, *certFile, *keyFile, *jwksFile, *issuer, *audience, *auditFile,
		require); err != nil {
		fmt.Fprintln(os.Stderr, "goexchange:", err)
		os.Exit(2)
	}
}

func serve(listen, certFile, keyFile, jwksFile, issuer, audience, auditFile string,
	require []string) error {
	if certFile == "" || keyFile == "" || jwksFile == "" || issuer == "" || audience == "" {
		return fmt.Errorf("-cert, -key, -jwks, -issuer and -audience are required")
	}
	keys, err := loadJWKS(jwksFile)
	if err != nil {
		return err
	}
	conditions := map[string]string{}
	for _, r := range require {
		claim, value, ok := strings.Cut(r, "=")
		if !ok || claim == "" {
			return fmt.Errorf("-require %q is not claim=value", r)
		}
		conditions[claim] = value
	}
	audit, err := os.OpenFile(auditFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("opening the audit log: %w", err)
	}
	defer audit.Close()
	signer, err := newSigner()
	if err != nil {
		return err
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return fmt.Errorf("loading the TLS pair: %w", err)
	}
	ex := &exchanger{keys: keys, issuer: issuer, audience: audience, conditions: conditions,
		signer: signer, audit: audit, leeway: 30 * time.Second, lifetime: 15 * time.Minute}
	server := newServer(pair, ex)
	listener, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	fmt.Printf("gRPC: %s\n", listener.Addr())
	os.Stdout.Sync()
	return server.Serve(listener)
}
