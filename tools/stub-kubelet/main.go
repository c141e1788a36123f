// Command stub-kubelet is a TEST STAND-IN for a kubelet's streaming endpoints, so that a real
// kube-apiserver can proxy `kubectl exec`, `attach`, `port-forward` and `logs` on machines that
// have no kubelet (the kubegate test machines). It is never deployed anywhere.
//
// Rules of this program:
//   - It serves the kubelet's routes (/exec, /attach, /portForward, /containerLogs, copied from
//     kubernetes pkg/kubelet/server/server.go) with the kubelet's own streaming library,
//     k8s.io/cri-streaming, so the wire protocols (SPDY/3.1 and WebSocket, remotecommand v1-v5,
//     portforward) are the real ones; only the "container" is fake: exec runs a REAL local
//     command (with a pty when tty=true, resized on request), attach joins one long-running
//     /bin/sh per container, port-forward dials 127.0.0.1:<port>, logs are fixed lines and,
//     with follow=true, one more line every 0.2 s until the client goes away.
//   - It listens on loopback only: -listen must name 127.0.0.1 or ::1, anything else is refused.
//   - HTTPS with a self-signed certificate made at start-up: the API server does not verify
//     kubelet certificates unless --kubelet-certificate-authority is set.
//   - Client certificates from the API server are NOT checked: any loopback caller may run
//     commands as the user running the stub. That is acceptable only for a test stand-in.
//   - On start it prints one line "stub-kubelet listening on HOST:PORT" to stdout.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"k8s.io/cri-streaming/pkg/streaming/portforward"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
)

const (
	streamIdleTimeout     = 4 * time.Hour
	streamCreationTimeout = remotecommand.DefaultStreamCreationTimeout
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "loopback address to listen on")
	shell := flag.String("shell", "/bin/sh", "shell that attach joins (one per container)")
	flag.Parse()
	if err := run(*listen, *shell); err != nil {
		fmt.Fprintln(os.Stderr, "stub-kubelet:", err)
		os.Exit(1)
	}
}

func run(listen, shell string) error {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("-listen %q: %w", listen, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-listen %q: a test stand-in listens on a loopback IP only", listen)
	}
	tlsConfig, err := selfSignedTLS(host)
	if err != nil {
		return err
	}
	listener, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	server := &http.Server{Handler: newMux(newRuntime(shell)), TLSConfig: tlsConfig,
		ReadHeaderTimeout: 10 * time.Second}
	fmt.Printf("stub-kubelet listening on %s\n", listener.Addr())
	return server.ServeTLS(listener, "", "")
}

func newMux(rt *runtime) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok"))
	})
	for _, p := range []string{"/exec/{ns}/{pod}/{container}", "/exec/{ns}/{pod}/{uid}/{container}"} {
		mux.HandleFunc(p, rt.serveExec)
	}
	for _, p := range []string{"/attach/{ns}/{pod}/{container}", "/attach/{ns}/{pod}/{uid}/{container}"} {
		mux.HandleFunc(p, rt.serveAttach)
	}
	for _, p := range []string{"/portForward/{ns}/{pod}", "/portForward/{ns}/{pod}/{uid}"} {
		mux.HandleFunc(p, rt.servePortForward)
	}
	mux.HandleFunc("GET /containerLogs/{ns}/{pod}/{container}", serveLogs)
	return mux
}

func (rt *runtime) serveExec(w http.ResponseWriter, r *http.Request) {
	opts, err := remotecommand.NewOptions(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	cmd := r.URL.Query()["command"]
	if len(cmd) == 0 {
		http.Error(w, "no command", http.StatusBadRequest)
		return
	}
	remotecommand.ServeExec(w, r, rt, r.PathValue("pod"), r.PathValue("uid"), containerKey(r), cmd, opts,
		streamIdleTimeout, streamCreationTimeout, remotecommand.SupportedStreamingProtocols)
}

func (rt *runtime) serveAttach(w http.ResponseWriter, r *http.Request) {
	opts, err := remotecommand.NewOptions(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	remotecommand.ServeAttach(w, r, rt, r.PathValue("pod"), r.PathValue("uid"), containerKey(r), opts,
		streamIdleTimeout, streamCreationTimeout, remotecommand.SupportedStreamingProtocols)
}

func (rt *runtime) servePortForward(w http.ResponseWriter, r *http.Request) {
	opts, err := portforward.NewV4Options(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	portforward.ServePortForward(w, r, rt, r.PathValue("pod"), r.PathValue("uid"), opts,
		streamIdleTimeout, streamCreationTimeout, portforward.SupportedProtocols)
}

// containerKey names a container as namespace/pod/container (attach keeps one shell per key).
func containerKey(r *http.Request) string {
	return r.PathValue("ns") + "/" + r.PathValue("pod") + "/" + r.PathValue("container")
}
