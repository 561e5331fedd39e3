package testservers

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Redis is a throwaway redis-server with appendonly yes, appendfsync always
// and maxmemory-policy noeviction.
type Redis struct {
	Addr string // 127.0.0.1:port
	URL  string // redis://127.0.0.1:port/0
	Dir  string
	// Args are added to the server's command line at every Start after
	// they are set (a test's settings, such as a slow load).
	Args []string

	bin  string
	port int
	process
}

// StartRedis starts a redis-server with its data in dir.
func StartRedis(dir string) (*Redis, error) {
	r, err := newRedis(dir)
	if err != nil {
		return nil, err
	}
	return r, r.Start()
}

// StartReplica starts a redis-server with its data in dir, set up as
// StartRedis sets one up, replicating master (--replicaof, kept in Args
// for its restarts).
func StartReplica(dir string, master *Redis) (*Redis, error) {
	r, err := newRedis(dir)
	if err != nil {
		return nil, err
	}
	host, port, _ := strings.Cut(master.Addr, ":")
	r.Args = []string{"--replicaof", host, port}
	return r, r.Start()
}

func newRedis(dir string) (*Redis, error) {
	bin, port, err := prepareRedis(dir)
	if err != nil {
		return nil, err
	}
	return &Redis{Addr: fmt.Sprintf("127.0.0.1:%d", port), URL: fmt.Sprintf("redis://127.0.0.1:%d/0", port), Dir: dir, bin: bin, port: port}, nil
}

// prepareRedis finds redis-server (which runs Sentinels too), draws a free
// port and makes dir, for a server or a Sentinel to start in.
func prepareRedis(dir string) (bin string, port int, err error) {
	if bin, err = findBinary("redis-server"); err != nil {
		return "", 0, err
	}
	if port, err = FreePort(); err != nil {
		return "", 0, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", 0, err
	}
	return bin, port, nil
}

// Start starts (or restarts) the server on its port and directory; the AOF
// written before is loaded back.
func (r *Redis) Start() error {
	args := []string{"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--dir", r.Dir,
		"--appendonly", "yes", "--appendfsync", "always", "--maxmemory-policy", "noeviction",
		"--save", "", "--repl-diskless-sync-delay", "0", "--daemonize", "no", "--logfile", filepath.Join(r.Dir, "redis.log")}
	if err := r.start(exec.Command(r.bin, append(args, r.Args...)...)); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	if err := waitPort(r.Addr, r.done, 10*time.Second); err != nil {
		r.Kill()
		log, _ := os.ReadFile(filepath.Join(r.Dir, "redis.log"))
		return fmt.Errorf("redis-server: %w\n%s", err, log)
	}
	return nil
}

// process is a server process this package started.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when it has exited
}

// start starts cmd as the process.
func (p *process) start(cmd *exec.Cmd) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	p.cmd, p.done = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(p.done)
	return nil
}

// Pid returns the process id.
func (p *process) Pid() int { return p.cmd.Process.Pid }

// Stop stops the process by pid (SIGTERM: a redis-server finishes its AOF
// and exits).
func (p *process) Stop() error {
	if p.cmd == nil {
		return nil
	}
	err := stopPid(p.cmd.Process.Pid, syscall.SIGTERM, 10*time.Second)
	<-p.done
	return err
}

// Kill kills the process with SIGKILL, as a crash would.
func (p *process) Kill() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}
