// Contender for the benchmark: download a job's artifacts archive and unpack it with Go's standard library only, the
// way GitLab Runner's artifacts downloader does (net/http to a temporary file, then archive/zip, one entry at a time).
// Built by bench/run.ts with `GO111MODULE=off go build`. Usage: go-fetch URL TOKEN DEST
package main

import (
	"archive/zip"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

func main() {
	url, token, dest := os.Args[1], os.Args[2], os.Args[3]
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		fail(err)
	}
	req.Header.Set("PRIVATE-TOKEN", token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		fail(err)
	}
	if res.StatusCode != 200 {
		fail(fmt.Errorf("HTTP %d", res.StatusCode))
	}
	tmp, err := os.CreateTemp(".", "artifacts-*.zip")
	if err != nil {
		fail(err)
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, res.Body); err != nil {
		fail(err)
	}
	res.Body.Close()
	if err := tmp.Close(); err != nil {
		fail(err)
	}
	r, err := zip.OpenReader(tmp.Name())
	if err != nil {
		fail(err)
	}
	defer r.Close()
	root, _ := filepath.Abs(dest)
	for _, f := range r.File {
		target := filepath.Join(root, f.Name)
		if target != root && !strings.HasPrefix(target, root+string(os.PathSeparator)) {
			fail(fmt.Errorf("%s: outside the destination", f.Name))
		}
		mode := f.Mode()
		switch {
		case mode.IsDir():
			if err := os.MkdirAll(target, 0o755); err != nil {
				fail(err)
			}
			continue
		case mode&os.ModeSymlink != 0:
			continue // GitLab Runner restores them last; the bench archives have none
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			fail(err)
		}
		in, err := f.Open()
		if err != nil {
			fail(err)
		}
		out, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode.Perm())
		if err != nil {
			fail(err)
		}
		if _, err := io.Copy(out, in); err != nil { // archive/zip checks the CRC-32 at EOF
			fail(fmt.Errorf("%s: %w", f.Name, err))
		}
		in.Close()
		if err := out.Close(); err != nil {
			fail(err)
		}
		os.Chtimes(target, f.Modified, f.Modified)
	}
}
