// Command loadgen drives one exchange service in a closed loop and prints one JSON report.
//
// It exists so that kubegate and its peer (Dex) are measured by the same client, and a client
// whose own cost does not flatter either side: a compiled Go program, not Python.
//
//	loadgen -mode grpc -target 127.0.0.1:8443 -ca ca.crt -tokens tokens.txt -concurrency 16
//	loadgen -mode https-form -target https://127.0.0.1:5556/token -ca ca.crt -tokens tokens.txt \
//	    -form connector_id=upstream -basic-auth client:secret
//
// Rules of this program:
//   - every request presents the next token of the file, in order across all workers from
//     -offset; a token is presented twice only after every other one (the report counts those
//     as "reused"); the first call (before the load) checks that the server accepts a token;
//   - only calls that start after the warm-up and end inside the measured window are counted;
//   - a call is an error when it fails or (https-form) its status is not 200; errors are
//     counted by kind (gRPC code or HTTP status), and their text is never printed: a response
//     could echo a token;
//   - the client's own CPU (getrusage RUSAGE_SELF) over the measured window is reported beside
//     the server's figures, so a reader can see what the client cost.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Report is the one JSON document the program prints.
type Report struct {
	Mode            string         `json:"mode"`
	Concurrency     int            `json:"concurrency"`
	Requests        int            `json:"requests"`
	Errors          map[string]int `json:"errors"`
	Seconds         float64        `json:"seconds"`
	Throughput      float64        `json:"throughput"`
	P50ms           float64        `json:"p50_ms"`
	P90ms           float64        `json:"p90_ms"`
	P99ms           float64        `json:"p99_ms"`
	ClientCPU       float64        `json:"client_cpu_seconds"`
	ClientCPUPerReq float64        `json:"client_cpu_us_per_request"`
	Taken           int64          `json:"tokens_taken"` // calls made, the check call included
	Reused          int64          `json:"tokens_reused"`
	LatenciesMs     []float64      `json:"latencies_ms,omitempty"`
}

type caller func(ctx context.Context, token string) (kind string)

type options struct {
	mode, target, caFile, tokensFile, method, basicAuth string
	form                                                multiFlag
	concurrency, samples, offset                        int
	duration, warmup                                    time.Duration
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	var o options
	flag.StringVar(&o.mode, "mode", "grpc", "grpc (kubegate Exchange) or https-form (RFC 8693 POST)")
	flag.StringVar(&o.target, "target", "", "host:port (grpc) or https URL (https-form)")
	flag.StringVar(&o.caFile, "ca", "", "PEM file of the CA that signed the server's certificate")
	flag.StringVar(&o.tokensFile, "tokens", "", "subject tokens, one per line")
	flag.StringVar(&o.method, "method", "/exchanger.v1.ExchangeService/Exchange", "gRPC method")
	flag.StringVar(&o.basicAuth, "basic-auth", "", "client_id:secret for HTTP Basic (https-form)")
	flag.Var(&o.form, "form", "extra form field key=value (https-form; repeatable)")
	flag.IntVar(&o.concurrency, "concurrency", 16, "workers calling back to back")
	flag.IntVar(&o.offset, "offset", 0, "index of the first token to present (tokens before it are kept for other loads)")
	flag.IntVar(&o.samples, "samples", 4000, "at most this many latencies in the report (0: none)")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "measured window")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "calls before the window, not counted")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
}

func run(o options) error {
	if o.target == "" || o.caFile == "" || o.tokensFile == "" || o.concurrency < 1 {
		return fmt.Errorf("-target, -ca, -tokens and -concurrency >= 1 are required")
	}
	tokens, err := readTokens(o.tokensFile)
	if err != nil {
		return err
	}
	roots, err := readRoots(o.caFile)
	if err != nil {
		return err
	}
	tlsConfig := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	var call caller
	var closeFn func()
	switch o.mode {
	case "grpc":
		call, closeFn, err = grpcCaller(o, tlsConfig)
	case "https-form":
		call, closeFn, err = formCaller(o, tlsConfig)
	default:
		err = fmt.Errorf("unknown -mode %q (grpc or https-form)", o.mode)
	}
	if err != nil {
		return err
	}
	defer closeFn()
	if o.offset < 0 {
		return fmt.Errorf("-offset must be >= 0")
	}
	// the check call takes the first token: a server that refuses it is not worth loading
	if kind := call(context.Background(), tokens[o.offset%len(tokens)]); kind != "" {
		return fmt.Errorf("the first call failed: %s", kind)
	}
	report := load(o, tokens, call)
	return json.NewEncoder(os.Stdout).Encode(report)
}

func load(o options, tokens []string, call caller) Report {
	var next atomic.Int64
	next.Store(int64(o.offset) + 1)
	var mu sync.Mutex
	var latencies []float64
	errors := map[string]int{}
	start := time.Now()
	windowStart, windowEnd := start.Add(o.warmup), start.Add(o.warmup+o.duration)
	var wg sync.WaitGroup
	for w := 0; w < o.concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			mine := make([]float64, 0, 4096)
			mineErr := map[string]int{}
			for {
				began := time.Now()
				if !began.Before(windowEnd) {
					break
				}
				index := next.Add(1) - 1
				kind := call(ctx, tokens[index%int64(len(tokens))])
				done := time.Now()
				if began.Before(windowStart) || done.After(windowEnd) {
					continue
				}
				if kind != "" {
					mineErr[kind]++
					continue
				}
				mine = append(mine, float64(done.Sub(began).Microseconds())/1000)
			}
			mu.Lock()
			latencies = append(latencies, mine...)
			for k, v := range mineErr {
				errors[k] += v
			}
			mu.Unlock()
		}()
	}
	time.Sleep(time.Until(windowStart))
	cpuBefore := selfCPU()
	time.Sleep(time.Until(windowEnd))
	cpu := selfCPU() - cpuBefore
	wg.Wait()
	return summarise(o, latencies, errors, cpu, next.Load()-int64(o.offset), int64(len(tokens)))
}

func summarise(o options, latencies []float64, errors map[string]int, cpu float64,
	taken, pool int64) Report {
	sort.Float64s(latencies)
	seconds := o.duration.Seconds()
	r := Report{Mode: o.mode, Concurrency: o.concurrency, Requests: len(latencies),
		Errors: errors, Seconds: seconds, Throughput: float64(len(latencies)) / seconds,
		P50ms: percentile(latencies, 0.5), P90ms: percentile(latencies, 0.9),
		P99ms: percentile(latencies, 0.99), ClientCPU: cpu, Taken: taken}
	if taken > pool {
		r.Reused = taken - pool
	}
	if len(latencies) > 0 {
		r.ClientCPUPerReq = cpu / float64(len(latencies)) * 1e6
	}
	r.LatenciesMs = thin(latencies, o.samples)
	return r
}

// percentile is the nearest-rank percentile of sorted samples (0 when there are none).
func percentile(sorted []float64, fraction float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(fraction*float64(len(sorted)) + 0.999999)
	if rank < 1 {
		rank = 1
	}
	if rank > len(sorted) {
		rank = len(sorted)
	}
	return sorted[rank-1]
}

func thin(sorted []float64, limit int) []float64 {
	if len(sorted) <= limit {
		return sorted
	}
	out := make([]float64, limit)
	step := float64(len(sorted)) / float64(limit)
	for i := range out {
		out[i] = sorted[int(float64(i)*step)]
	}
	return out
}

func selfCPU() float64 {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		return 0
	}
	return float64(usage.Utime.Nano()+usage.Stime.Nano()) / 1e9
}

func readTokens(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the tokens: %w", err)
	}
	tokens := strings.Fields(string(data))
	if len(tokens) == 0 {
		return nil, fmt.Errorf("%s holds no tokens", path)
	}
	return tokens, nil
}

func readRoots(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}
