// Writes a zip with Go's archive/zip, the way GitLab Runner's legacy archiver does: zip.FileHeader with SetMode,
// Deflate or Store, streamed through CreateHeader (so every file gets a data descriptor and zero sizes in its local
// header). Reads a JSON spec on stdin; -many N adds N small generated files (N >= 65535 forces zip64 records).
package main

import (
	"archive/zip"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"time"
)

type entry struct {
	Name   string `json:"name"`
	Data   string `json:"data"` // base64
	Target string `json:"target"`
	Mode   uint32 `json:"mode"`
	Type   string `json:"type"` // file | dir | symlink
}

type spec struct {
	Method  string  `json:"method"`
	Entries []entry `json:"entries"`
}

func main() {
	out := flag.String("o", "", "output zip")
	many := flag.Int("many", 0, "generated small files")
	flag.Parse()
	var s spec
	if err := json.NewDecoder(os.Stdin).Decode(&s); err != nil {
		panic(err)
	}
	f, err := os.Create(*out)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	zw := zip.NewWriter(f)
	method := zip.Deflate
	if s.Method == "store" {
		method = zip.Store
	}
	mtime := time.Date(2024, 5, 6, 7, 8, 10, 0, time.Local)
	for _, e := range s.Entries {
		h := &zip.FileHeader{Name: e.Name, Method: method, Modified: mtime}
		perm := fs.FileMode(e.Mode & 0o777)
		var data []byte
		switch e.Type {
		case "dir":
			h.SetMode(fs.ModeDir | perm)
			h.Method = zip.Store
		case "symlink":
			h.SetMode(fs.ModeSymlink | 0o777)
			data = []byte(e.Target)
		default:
			h.SetMode(perm)
			data, err = base64.StdEncoding.DecodeString(e.Data)
			if err != nil {
				panic(err)
			}
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			panic(err)
		}
		if _, err := w.Write(data); err != nil {
			panic(err)
		}
	}
	for i := 0; i < *many; i++ {
		h := &zip.FileHeader{Name: fmt.Sprintf("many/d%03d/f%06d.txt", i/1000, i), Method: method, Modified: mtime}
		h.SetMode(0o644)
		w, err := zw.CreateHeader(h)
		if err != nil {
			panic(err)
		}
		fmt.Fprintf(w, "file %d\n", i)
	}
	if err := zw.Close(); err != nil {
		panic(err)
	}
}
