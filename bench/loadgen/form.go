package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

const (
	grantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	tokenTypeJWT       = "urn:ietf:params:oauth:token-type:jwt"
)

// formCaller POSTs an RFC 8693 token exchange form per call over keep-alive HTTP/1.1 TLS
// connections (one per worker at most). -form fields override the defaults (grant_type,
// subject_token_type); the subject token is always the next one of the file.
func formCaller(o options, tlsConfig *tls.Config) (caller, func(), error) {
	base := url.Values{"grant_type": {grantTokenExchange}, "subject_token_type": {tokenTypeJWT}}
	for _, field := range o.form {
		key, value, ok := strings.Cut(field, "=")
		if !ok || key == "" {
			return nil, nil, fmt.Errorf("-form %q is not key=value", field)
		}
		base.Set(key, value)
	}
	user, secret, hasAuth := strings.Cut(o.basicAuth, ":")
	transport := &http.Transport{TLSClientConfig: tlsConfig, MaxIdleConns: o.concurrency,
		MaxIdleConnsPerHost: o.concurrency, MaxConnsPerHost: o.concurrency,
		IdleConnTimeout: time.Minute}
	client := &http.Client{Transport: transport, Timeout: 30 * time.Second}
	call := func(ctx context.Context, token string) string {
		form := make(url.Values, len(base)+1)
		for k, v := range base {
			form[k] = v
		}
		form.Set("subject_token", token)
		request, err := http.NewRequestWithContext(ctx, http.MethodPost, o.target,
			strings.NewReader(form.Encode()))
		if err != nil {
			return "request"
		}
		request.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if hasAuth && o.basicAuth != "" {
			request.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(secret))
		}
		response, err := client.Do(request)
		if err != nil {
			return "transport"
		}
		_, _ = io.Copy(io.Discard, response.Body)
		response.Body.Close()
		if response.StatusCode != http.StatusOK {
			return fmt.Sprintf("http %d", response.StatusCode)
		}
		return ""
	}
	return call, transport.CloseIdleConnections, nil
}
