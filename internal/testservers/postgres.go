package testservers

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Postgres is a throwaway PostgreSQL primary with one streaming replica.
type Postgres struct {
	// PrimaryURL and ReplicaURL reach the postgres database as the
	// postgres superuser over loopback TCP.
	PrimaryURL, ReplicaURL string
	Dir                    string

	binDir      string
	primaryPort int
	replicaPort int
	primaryData string
	replicaData string
	uid, gid    int
	asPostgres  bool
}

// StartPostgres initialises a primary in dir/primary, starts it, clones a
// streaming replica with pg_basebackup -R into dir/replica and starts it.
// dir must be usable by the postgres user (see TempDir).
func StartPostgres(dir string) (*Postgres, error) {
	initdb, err := findBinary("initdb")
	if err != nil {
		return nil, err
	}
	// Symlinks on PATH (Debian puts a few there) lead to the directory
	// that has every PostgreSQL binary.
	if real, err := filepath.EvalSymlinks(initdb); err == nil {
		initdb = real
	}
	p := &Postgres{Dir: dir, binDir: filepath.Dir(initdb), primaryData: filepath.Join(dir, "primary"), replicaData: filepath.Join(dir, "replica")}
	if os.Geteuid() == 0 {
		// initdb and postgres refuse to run as root.
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("%w: no postgres user to run PostgreSQL as (%v)", ErrMissing, err)
		}
		p.uid, _ = strconv.Atoi(u.Uid)
		p.gid, _ = strconv.Atoi(u.Gid)
		p.asPostgres = true
		if err := os.Chown(dir, p.uid, p.gid); err != nil {
			return nil, fmt.Errorf("chown %s: %w", dir, err)
		}
	}
	if p.primaryPort, err = FreePort(); err != nil {
		return nil, err
	}
	if p.replicaPort, err = FreePort(); err != nil {
		return nil, err
	}
	if err := p.run("initdb", "-D", p.primaryData, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions"); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`
listen_addresses = '127.0.0.1'
unix_socket_directories = '%s'
wal_level = replica
max_wal_senders = 10
hot_standby = on
hot_standby_feedback = on
max_connections = 200
shared_buffers = 64MB
# The WAL a replica paused or cut off by restarts of the primary needs to
# catch up: tests stop both at will, and a replica that asked for a
# removed segment would never recover.
wal_keep_size = 1GB
`, dir)
	if err := appendFile(filepath.Join(p.primaryData, "postgresql.conf"), conf); err != nil {
		return nil, err
	}
	if err := p.startData(p.primaryData, p.primaryPort); err != nil {
		return nil, err
	}
	if err := p.run("pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(p.primaryPort), "-U", "postgres", "-D", p.replicaData, "-R", "-X", "stream", "--no-sync"); err != nil {
		p.Stop()
		return nil, err
	}
	if err := p.startData(p.replicaData, p.replicaPort); err != nil {
		p.Stop()
		return nil, err
	}
	p.PrimaryURL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.primaryPort)
	p.ReplicaURL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.replicaPort)
	return p, nil
}

// DatabaseURLs returns the primary and replica URLs of database name.
func (p *Postgres) DatabaseURLs(name string) (primary, replica string) {
	r := strings.NewReplacer("/postgres?", "/"+name+"?")
	return r.Replace(p.PrimaryURL), r.Replace(p.ReplicaURL)
}

// run runs a PostgreSQL binary, as the postgres user when we are root.
func (p *Postgres) run(name string, args ...string) error {
	cmd := p.command(name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w\n%s", name, err, out.String())
	}
	return nil
}

func (p *Postgres) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(p.binDir, name), args...)
	if p.asPostgres {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(p.uid), Gid: uint32(p.gid)}}
	}
	cmd.Dir = p.Dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	return cmd
}

func (p *Postgres) startData(data string, port int) error {
	log := filepath.Join(p.Dir, filepath.Base(data)+".log")
	err := p.run("pg_ctl", "-D", data, "-l", log, "-w", "-t", "60", "-o", fmt.Sprintf("-p %d -k %s", port, p.Dir), "start")
	if err != nil {
		out, _ := os.ReadFile(log)
		return fmt.Errorf("%w\n%s", err, out)
	}
	return nil
}

// pid reads the postmaster's pid of a data directory.
func pid(data string) int {
	b, err := os.ReadFile(filepath.Join(data, "postmaster.pid"))
	if err != nil {
		return 0
	}
	first, _, _ := strings.Cut(string(b), "\n")
	n, _ := strconv.Atoi(strings.TrimSpace(first))
	return n
}

// PrimaryPid and ReplicaPid return the postmasters' pids (0 if stopped).
func (p *Postgres) PrimaryPid() int { return pid(p.primaryData) }

// ReplicaPid returns the replica postmaster's pid (0 if stopped).
func (p *Postgres) ReplicaPid() int { return pid(p.replicaData) }

// StopPrimary stops the primary by pid (fast shutdown).
func (p *Postgres) StopPrimary() error {
	return stopPid(pid(p.primaryData), syscall.SIGINT, 30*time.Second)
}

// StartPrimary starts the primary again on its port.
func (p *Postgres) StartPrimary() error { return p.startData(p.primaryData, p.primaryPort) }

// StopReplica stops the replica by pid (fast shutdown).
func (p *Postgres) StopReplica() error {
	return stopPid(pid(p.replicaData), syscall.SIGINT, 30*time.Second)
}

// StartReplica starts the replica again on its port.
func (p *Postgres) StartReplica() error { return p.startData(p.replicaData, p.replicaPort) }

// Stop stops the replica and the primary by pid.
func (p *Postgres) Stop() error {
	var errs []error
	for _, data := range []string{p.replicaData, p.primaryData} {
		if n := pid(data); alive(n) {
			if err := stopPid(n, syscall.SIGINT, 30*time.Second); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("stop postgres: %v", errs)
	}
	return nil
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
