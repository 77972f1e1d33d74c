package up

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// process is one child of `trellis up`: a sidecar or an app. It runs in its
// own process group, so stopping it stops whatever it started too, and it is
// killed by the kernel if `trellis up` itself dies (Pdeathsig).
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // valid after done is closed
}

// startProcess starts argv with env added to ours, copying each line of its
// output to out prefixed by "[name] ".
func startProcess(name string, argv []string, env []string, out *lineWriter) (*process, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout // one pipe: lines stay in order
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", name, argv[0], err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		out.copyLines(name, stdout)
	}()
	go func() {
		<-copied // Wait closes the pipe; read it all first
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group, waits up to grace, then SIGKILLs it.
func (p *process) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
	// Anything the process left in its group goes too.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// lineWriter writes whole lines from several sources to one writer, each
// prefixed with its source's name.
type lineWriter struct {
	mu  sync.Mutex
	out io.Writer
}

func (w *lineWriter) printf(prefix, format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fmt.Fprintf(w.out, "[%s] "+format+"\n", append([]any{prefix}, args...)...)
}

func (w *lineWriter) copyLines(prefix string, r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		w.mu.Lock()
		fmt.Fprintf(w.out, "[%s] %s\n", prefix, sc.Bytes())
		w.mu.Unlock()
	}
	if err := sc.Err(); err != nil && !errors.Is(err, os.ErrClosed) {
		w.printf(prefix, "(log copy ended: %v)", err)
	}
	_, _ = io.Copy(io.Discard, r)
}

// Write makes lineWriter an io.Writer for in-process loggers: each call is
// assumed to be whole lines (slog writes one record per call).
func (w *lineWriter) prefixed(prefix string) io.Writer {
	return writerFunc(func(b []byte) (int, error) {
		w.mu.Lock()
		defer w.mu.Unlock()
		if _, err := fmt.Fprintf(w.out, "[%s] %s", prefix, b); err != nil {
			return 0, err
		}
		return len(b), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// waitAny returns when ctx ends or any process exits, naming the process.
func waitAny(ctx context.Context, procs []*process) *process {
	cases := make(chan *process, len(procs))
	stop := make(chan struct{})
	defer close(stop)
	for _, p := range procs {
		go func() {
			select {
			case <-p.done:
				cases <- p
			case <-stop:
			}
		}()
	}
	select {
	case <-ctx.Done():
		return nil
	case p := <-cases:
		return p
	}
}
