// Package image builds Airlock's OCI image without a container daemon: one
// layer holding the static airlock binary, a static health probe, CA
// certificates and the passwd entries of the non-root user, assembled with
// go-containerregistry. Every byte is fixed by its inputs (sorted entries,
// fixed owners, modes and mtimes), so the same sources give the same digest.
package image

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// User is the image's user: distroless's "nonroot", which Pod Security
// "restricted" and the deploy/ manifests (runAsUser: 65532) expect.
const User = "65532:65532"

// Paths inside the image.
const (
	Entrypoint  = "/airlock"
	Healthcheck = "/healthcheck"
	CACerts     = "/etc/ssl/certs/ca-certificates.crt"
)

// Options are the inputs of an image.
type Options struct {
	Binary      string // static airlock binary (required)
	Healthcheck string // static health probe binary (required)
	// CACerts is a PEM bundle copied to /etc/ssl/certs. Default: the
	// build machine's /etc/ssl/certs/ca-certificates.crt (Debian).
	CACerts string
	// Epoch is every file's mtime and the image's creation time.
	// Default: SOURCE_DATE_EPOCH, else the Unix epoch.
	Epoch time.Time
	Arch  string // Default: amd64
}

// Build assembles the image.
func Build(o Options) (v1.Image, error) {
	if o.Binary == "" || o.Healthcheck == "" {
		return nil, fmt.Errorf("image: binary and health probe are required")
	}
	if o.CACerts == "" {
		o.CACerts = CACerts
	}
	if o.Arch == "" {
		o.Arch = "amd64"
	}
	if o.Epoch.IsZero() {
		o.Epoch = time.Unix(0, 0).UTC()
	}
	var files []file
	for _, f := range []struct{ src, dst string }{{o.Binary, Entrypoint}, {o.Healthcheck, Healthcheck}} {
		b, err := os.ReadFile(f.src)
		if err != nil {
			return nil, fmt.Errorf("image: %w", err)
		}
		files = append(files, file{path: f.dst, mode: 0o555, data: b})
	}
	ca, err := os.ReadFile(o.CACerts)
	if err != nil {
		return nil, fmt.Errorf("image: CA certificates: %w", err)
	}
	files = append(files,
		file{path: CACerts, mode: 0o444, data: ca},
		file{path: "/etc/passwd", mode: 0o444, data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		file{path: "/etc/group", mode: 0o444, data: []byte("root:x:0:\nnonroot:x:65532:\n")},
		file{path: "/etc/nsswitch.conf", mode: 0o444, data: []byte("hosts: files dns\n")},
		file{path: "/tmp", dir: true, mode: 0o1777},
		file{path: "/home/nonroot", dir: true, mode: 0o700, uid: 65532},
	)
	layerTar, err := tarFiles(files, o.Epoch)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{
		Layer:     layer,
		History:   v1.History{Created: v1.Time{Time: o.Epoch}, CreatedBy: "airlock make image", Comment: "airlock, healthcheck, CA certificates, nonroot user"},
		MediaType: types.OCILayer,
	})
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = o.Arch, "linux"
	cf.Created = v1.Time{Time: o.Epoch}
	cf.Config = v1.Config{
		User:       User,
		Entrypoint: []string{Entrypoint},
		Cmd:        []string{"help"},
		WorkingDir: "/home/nonroot",
		Env:        []string{"SSL_CERT_FILE=" + CACerts},
		Labels: map[string]string{
			"org.opencontainers.image.source":      "https://github.com/airlockhq/airlock",
			"org.opencontainers.image.title":       "airlock",
			"org.opencontainers.image.description": "Airlock worker, approvals server, codec server and CLI",
		},
	}
	return mutate.ConfigFile(img, cf)
}

// file is one entry of the layer.
type file struct {
	path string
	dir  bool
	mode int64
	uid  int
	data []byte
}

// tarFiles writes the layer: parent directories first, entries sorted,
// owner root unless said otherwise, every time set to epoch.
func tarFiles(files []file, epoch time.Time) ([]byte, error) {
	all := map[string]file{}
	for _, f := range files {
		all[f.path] = f
		for d := filepath.Dir(f.path); d != "/"; d = filepath.Dir(d) {
			if _, ok := all[d]; !ok {
				all[d] = file{path: d, dir: true, mode: 0o755}
			}
		}
	}
	paths := make([]string, 0, len(all))
	for p := range all {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		f := all[p]
		h := &tar.Header{
			Name: p[1:], Mode: f.mode, Uid: f.uid, Gid: f.uid, ModTime: epoch,
			Format: tar.FormatPAX, Typeflag: tar.TypeReg, Size: int64(len(f.data)),
		}
		if f.dir {
			h.Name += "/"
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		// PAX would otherwise add access and change times.
		h.AccessTime, h.ChangeTime = time.Time{}, time.Time{}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// GoBuild builds pkg (run from dir, its module) as a static Linux binary
// at out, with the flags that make Go builds reproducible.
func GoBuild(ctx context.Context, dir, pkg, out, arch string) error {
	if arch == "" {
		arch = "amd64"
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w -buildid=", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch, "GOFLAGS=-mod=readonly")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}
