package main

import (
	"context"
	"crypto/rsa"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

type exchanger struct {
	keys             map[string]*rsa.PublicKey
	issuer, audience string
	conditions       map[string]string
	signer           *signer
	leeway, lifetime time.Duration
	auditMu          sync.Mutex
	audit            *os.File
}

// rawCodec hands the handler the request's bytes and sends the answer's bytes as they are.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

func newServer(pair tls.Certificate, ex *exchanger) *grpc.Server {
	server := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{pair},
			MinVersion: tls.VersionTLS12})),
		grpc.ForceServerCodec(rawCodec{}))
	server.RegisterService(&grpc.ServiceDesc{
		ServiceName: "exchanger.v1.ExchangeService",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Exchange", Handler: func(
			_ any, ctx context.Context, decode func(any) error,
			_ grpc.UnaryServerInterceptor) (any, error) {
			var request []byte
			if err := decode(&request); err != nil {
				return nil, err
			}
			response, err := ex.exchange(ctx, request)
			if err != nil {
				return nil, err
			}
			return &response, nil
		}}},
		Metadata: "exchanger/v1/exchange.proto",
	}, struct{}{})
	return server
}

// subjectToken is field 1 of an ExchangeRequest.
func subjectToken(request []byte) (string, bool) {
	for len(request) > 0 {
		number, kind, n := protowire.ConsumeTag(request)
		if n < 0 {
			return "", false
		}
		request = request[n:]
		if number == 1 && kind == protowire.BytesType {
			value, m := protowire.ConsumeString(request)
			return value, m >= 0
		}
		m := protowire.ConsumeFieldValue(number, kind, request)
		if m < 0 {
			return "", false
		}
		request = request[m:]
	}
	return "", false
}

func (ex *exchanger) exchange(_ context.Context, request []byte) ([]byte, error) {
	token, ok := subjectToken(request)
	if !ok || token == "" {
		return nil, status.Error(codes.InvalidArgument, "subject_token is required")
	}
	claims, err := verifyRS256(token, ex.keys)
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, "the subject token is not valid")
	}
	now := time.Now()
	if err := ex.checkClaims(claims, now); err != nil {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	for claim, want := range ex.conditions {
		if got, _ := claims[claim].(string); got != want {
			ex.writeAudit(map[string]any{"decision": "deny", "reason": "no mapping matched",
				"iss": claims["iss"], "sub": claims["sub"], "jti": claims["jti"]}, now)
			return nil, status.Error(codes.PermissionDenied, "no trust mapping admits this token")
		}
	}
	issued := randomID()
	credential, err := ex.signer.signES256(map[string]any{
		"iss": "https://goexchange.local", "sub": "ci:octo-org/web", "aud": []string{"kubernetes"},
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(ex.lifetime).Unix(), "jti": issued,
		"groups": []string{"kubegate:bench"}})
	if err != nil {
		return nil, status.Error(codes.Internal, "signing failed")
	}
	if err := ex.writeAudit(map[string]any{"decision": "allow", "iss": claims["iss"],
		"sub": claims["sub"], "jti": claims["jti"], "mapping": "web-deploy",
		"issued_jti": issued}, now); err != nil {
		return nil, status.Error(codes.Unavailable, "audit log unavailable")
	}
	response := protowire.AppendTag(nil, 1, protowire.BytesType)
	response = protowire.AppendString(response, credential)
	response = protowire.AppendTag(response, 2, protowire.BytesType)
	response = protowire.AppendString(response, "token")
	response = protowire.AppendTag(response, 4, protowire.BytesType)
	return protowire.AppendString(response, issued), nil
}

func (ex *exchanger) checkClaims(claims map[string]any, now time.Time) error {
	if iss, _ := claims["iss"].(string); iss != ex.issuer {
		return fmt.Errorf("unknown issuer")
	}
	if !hasAudience(claims["aud"], ex.audience) {
		return fmt.Errorf("wrong audience")
	}
	exp, okExp := numericClaim(claims, "exp")
	iat, okIat := numericClaim(claims, "iat")
	if !okExp || !okIat || now.After(exp.Add(ex.leeway)) || iat.After(now.Add(ex.leeway)) {
		return fmt.Errorf("expired or not yet valid")
	}
	if nbf, ok := numericClaim(claims, "nbf"); ok && nbf.After(now.Add(ex.leeway)) {
		return fmt.Errorf("not yet valid")
	}
	return nil
}

func hasAudience(aud any, want string) bool {
	switch v := aud.(type) {
	case string:
		return v == want
	case []any:
		for _, a := range v {
			if s, _ := a.(string); s == want {
				return true
			}
		}
	}
	return false
}

// writeAudit appends one JSON line and fsyncs it; one writer at a time.
func (ex *exchanger) writeAudit(record map[string]any, now time.Time) error {
	record["time"] = now.UTC().Format(time.RFC3339Nano)
	line, err := json.Marshal(record)
	if err != nil {
		return err
	}
	ex.auditMu.Lock()
	defer ex.auditMu.Unlock()
	if _, err := ex.audit.Write(append(line, '\n')); err != nil {
		return err
	}
	return ex.audit.Sync()
}
