package worker

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Version is the mediasoup-worker version this server is built and tested
// against (third_party/mediasoup-worker/build.sh pins the same one). It is what
// clients receive in the mediasoup-version notification.
const Version = "3.26.0"

// ErrBinaryNotFound is returned by FindBinary when no worker binary is found.
var ErrBinaryNotFound = errors.New("mediasoup-worker binary not found: run `make worker`, or pass -worker-bin PATH (env MEDIASOUP_WORKER_BIN)")

// FindBinary returns the mediasoup-worker to run. The rule, first match wins:
//  1. configured (the -worker-bin flag, worker.bin in YAML, or MEDIASOUP_WORKER_BIN),
//     which must then exist: a wrong explicit path is an error, not a fallback;
//  2. bin/mediasoup-worker next to the running executable or its parent folder
//     (where `make` puts both);
//  3. bin/mediasoup-worker under the current directory;
//  4. mediasoup-worker on PATH.
func FindBinary(configured string) (string, error) {
	if configured != "" {
		if err := checkExecutable(configured); err != nil {
			return "", fmt.Errorf("worker binary %q: %w", configured, err)
		}
		return filepath.Abs(configured)
	}
	var candidates []string
	if exe, err := os.Executable(); err == nil {
		dir := filepath.Dir(exe)
		candidates = append(candidates,
			filepath.Join(dir, "mediasoup-worker"),
			filepath.Join(dir, "bin", "mediasoup-worker"),
			filepath.Join(dir, "..", "bin", "mediasoup-worker"))
	}
	candidates = append(candidates, filepath.Join("bin", "mediasoup-worker"))
	for _, c := range candidates {
		if checkExecutable(c) == nil {
			return filepath.Abs(c)
		}
	}
	if p, err := exec.LookPath("mediasoup-worker"); err == nil {
		return p, nil
	}
	return "", ErrBinaryNotFound
}

func checkExecutable(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return errors.New("not an executable file")
	}
	return nil
}
