package main

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"

	"github.com/creack/pty"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"
)

// runtime is the stand-in container runtime: local processes instead of containers.
type runtime struct {
	shell  string
	mu     sync.Mutex
	shells map[string]*attachedShell // by containerKey
}

func newRuntime(shell string) *runtime {
	return &runtime{shell: shell, shells: map[string]*attachedShell{}}
}

// ExecInContainer runs cmd as a local process, with a pty when tty is set.
func (rt *runtime) ExecInContainer(ctx context.Context, _, _, _ string, cmd []string,
	in io.Reader, out, errOut io.WriteCloser, tty bool,
	resize <-chan remotecommand.TerminalSize, _ time.Duration) error {
	proc := exec.CommandContext(ctx, cmd[0], cmd[1:]...)
	proc.Env = append(os.Environ(), "TERM=xterm", "PS1=$ ") // a fixed prompt, whoever runs the stub
	var err error
	if tty {
		err = runWithPty(proc, in, out, resize)
	} else {
		err = runPiped(proc, in, out, errOut)
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) && exitErr.ExitCode() > 0 {
		return utilexec.CodeExitError{Err: err, Code: exitErr.ExitCode()}
	}
	return err
}

func runPiped(proc *exec.Cmd, in io.Reader, out, errOut io.WriteCloser) error {
	if out != nil {
		proc.Stdout = out
	}
	if errOut != nil {
		proc.Stderr = errOut
	}
	if in == nil {
		return proc.Run()
	}
	stdin, err := proc.StdinPipe()
	if err != nil {
		return err
	}
	if err := proc.Start(); err != nil {
		return err
	}
	go func() {
		_, _ = io.Copy(stdin, in)
		_ = stdin.Close()
	}()
	return proc.Wait()
}

func runWithPty(proc *exec.Cmd, in io.Reader, out io.WriteCloser, resize <-chan remotecommand.TerminalSize) error {
	terminal, err := pty.Start(proc)
	if err != nil {
		return err
	}
	defer func() { _ = terminal.Close() }()
	go followResizes(terminal, resize)
	if in != nil {
		go func() { _, _ = io.Copy(terminal, in) }()
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		if out != nil {
			_, _ = io.Copy(out, terminal) // ends with EIO once the process and its children exit
		} else {
			_, _ = io.Copy(io.Discard, terminal)
		}
	}()
	waitErr := proc.Wait()
	select { // the remaining output is drained; a background child holding the pty is not waited for
	case <-copied:
	case <-time.After(2 * time.Second):
	}
	return waitErr
}

func followResizes(terminal *os.File, resize <-chan remotecommand.TerminalSize) {
	for size := range resize {
		_ = pty.Setsize(terminal, &pty.Winsize{Rows: size.Height, Cols: size.Width})
	}
}

// PortForward copies between stream and a TCP connection to 127.0.0.1:port, passing the
// client's end on as a half-close, until the local server closes its side.
func (rt *runtime) PortForward(ctx context.Context, _, _ string, port int32, stream io.ReadWriteCloser) error {
	defer func() { _ = stream.Close() }()
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	go func() { // the client's end of the stream passes on as a half-close
		_, _ = io.Copy(conn, stream)
		if tcp, ok := conn.(*net.TCPConn); ok {
			_ = tcp.CloseWrite()
		}
	}()
	answered := make(chan struct{})
	go func() { _, _ = io.Copy(stream, conn); close(answered) }()
	select { // done when the local server has said all it will, or the request ends
	case <-answered:
	case <-ctx.Done():
	}
	return nil
}
