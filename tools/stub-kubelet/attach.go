package main

import (
	"context"
	"io"
	"os"
	"os/exec"
	"sync"

	"github.com/creack/pty"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
)

// attachedShell is the long-running "main process" of one container: a shell on a pty whose
// output goes to every attached client.
type attachedShell struct {
	terminal *os.File
	mu       sync.Mutex
	clients  map[io.Writer]struct{}
}

// AttachContainer joins the container's shell (started on first use) until the client's stdin
// ends or the request ends.
func (rt *runtime) AttachContainer(ctx context.Context, _, _, container string,
	in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	shell, err := rt.shellFor(container)
	if err != nil {
		return err
	}
	writer := out
	if writer == nil {
		writer = errOut
	}
	if writer != nil {
		shell.subscribe(writer)
		defer shell.unsubscribe(writer)
	}
	go followResizes(shell.terminal, resize)
	if in == nil {
		<-ctx.Done()
		return nil
	}
	copied := make(chan struct{})
	go func() { _, _ = io.Copy(shell.terminal, in); close(copied) }()
	select {
	case <-copied:
	case <-ctx.Done():
	}
	return nil
}

func (rt *runtime) shellFor(container string) (*attachedShell, error) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if shell, ok := rt.shells[container]; ok {
		return shell, nil
	}
	proc := exec.Command(rt.shell)
	proc.Env = append(os.Environ(), "TERM=xterm", "PS1=$ ")
	terminal, err := pty.Start(proc)
	if err != nil {
		return nil, err
	}
	shell := &attachedShell{terminal: terminal, clients: map[io.Writer]struct{}{}}
	rt.shells[container] = shell
	go shell.broadcast()
	go func() {
		_ = proc.Wait()
		rt.mu.Lock()
		delete(rt.shells, container)
		rt.mu.Unlock()
	}()
	return shell, nil
}

func (s *attachedShell) broadcast() {
	buf := make([]byte, 32*1024)
	for {
		n, err := s.terminal.Read(buf)
		if n > 0 {
			s.mu.Lock()
			for client := range s.clients {
				_, _ = client.Write(buf[:n])
			}
			s.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

func (s *attachedShell) subscribe(w io.Writer) {
	s.mu.Lock()
	s.clients[w] = struct{}{}
	s.mu.Unlock()
}

func (s *attachedShell) unsubscribe(w io.Writer) {
	s.mu.Lock()
	delete(s.clients, w)
	s.mu.Unlock()
}
