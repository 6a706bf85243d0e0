package notarytest

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Why notary-server is patched. Its upload handler takes each metadata
// file's role from the multipart part's file name: "targets/releases.json"
// names the role targets/releases. Since Go 1.17, mime/multipart's
// Part.FileName returns filepath.Base of that name, so a notary-server
// built with any current Go sees "releases", answers 400 "invalid role"
// and refuses every delegation (notaryproject/notary issue 1630, never
// released as a fix). The patch reads the file name from the
// Content-Disposition header itself, as Go 1.16 did.

// buildStamp changes whenever build or the patch changes, so that cached
// binaries built otherwise are rebuilt.
const buildStamp = "notary-server v0.7.0 cgo=0 patch=multipart-filename-1"

const (
	patchFile = "server/handlers/default.go"
	patchFrom = `part.FileName()`
	patchTo   = `nivPartFileName(part)`
	helper    = `package handlers

import (
	"mime"
	"mime/multipart"
)

// nivPartFileName is Part.FileName without the filepath.Base that Go 1.17
// added: role names such as "targets/releases" contain a slash.
// (Patched in by nri-image-verifier's tests; notary issue 1630.)
func nivPartFileName(p *multipart.Part) string {
	_, params, err := mime.ParseMediaType(p.Header.Get("Content-Disposition"))
	if err != nil {
		return ""
	}
	return params["filename"]
}
`
)

// patch applies the fix to the notary source tree at src.
func patch(src string) error {
	path := filepath.Join(src, patchFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("patch: %w", err)
	}
	if n := bytes.Count(b, []byte(patchFrom)); n != 1 {
		return fmt.Errorf("patch: %s has %q %d times, want once: the source is not notary %s as expected", patchFile, patchFrom, n, Version)
	}
	b = bytes.Replace(b, []byte(patchFrom), []byte(patchTo), 1)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("patch: %w", err)
	}
	return os.WriteFile(filepath.Join(src, "server/handlers/niv_filename.go"), []byte(helper), 0o644)
}

// copyTree copies the module source (read-only in the module cache) to a
// writable tree, without the vendor directory: the build uses modules.
func copyTree(from, to string) error {
	return filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(from, path)
		if err != nil {
			return err
		}
		dst := filepath.Join(to, rel)
		switch {
		case d.IsDir() && rel == "vendor":
			return filepath.SkipDir
		case d.IsDir():
			return os.MkdirAll(dst, 0o755)
		case !d.Type().IsRegular():
			return nil
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}
