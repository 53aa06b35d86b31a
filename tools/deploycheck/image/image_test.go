package image

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// built is the image the tests inspect, built once from the repository's
// sources exactly as `make image` does.
func built(t *testing.T) (v1.Image, Options) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the airlock binary")
	}
	dir := t.TempDir()
	o := Options{Binary: filepath.Join(dir, "airlock"), Healthcheck: filepath.Join(dir, "healthcheck")}
	require.NoError(t, GoBuild(t.Context(), "../../..", "./cmd/airlock", o.Binary, ""))
	require.NoError(t, GoBuild(t.Context(), "..", "./cmd/healthcheck", o.Healthcheck, ""))
	img, err := Build(o)
	require.NoError(t, err)
	return img, o
}

func TestImage(t *testing.T) {
	img, o := built(t)

	t.Run("same inputs, same digest", func(t *testing.T) {
		again, err := Build(o)
		require.NoError(t, err)
		d1, err := img.Digest()
		require.NoError(t, err)
		d2, err := again.Digest()
		require.NoError(t, err)
		assert.Equal(t, d1, d2)
		// And through the tarball docker load reads.
		var buf bytes.Buffer
		require.NoError(t, tarball.Write(nil, again, &buf))
		back, err := tarball.Image(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil }, nil)
		require.NoError(t, err)
		// docker's tarball format rewrites the manifest, not the content:
		// the same config and layer come back.
		c1, err := again.ConfigName()
		require.NoError(t, err)
		c2, err := back.ConfigName()
		require.NoError(t, err)
		assert.Equal(t, c1, c2)
	})

	t.Run("non-root, entrypoint airlock, OCI", func(t *testing.T) {
		cf, err := img.ConfigFile()
		require.NoError(t, err)
		assert.Equal(t, "65532:65532", cf.Config.User)
		assert.Equal(t, []string{"/airlock"}, cf.Config.Entrypoint)
		assert.Equal(t, "linux", cf.OS)
		mt, err := img.MediaType()
		require.NoError(t, err)
		assert.Equal(t, "application/vnd.oci.image.manifest.v1+json", string(mt))
	})

	files := extract(t, img)
	t.Run("no shell, nothing but what airlock needs", func(t *testing.T) {
		for name := range files {
			switch path.Base(name) {
			case "sh", "bash", "ash", "dash", "busybox", "zsh", "su", "sudo", "apt", "apk":
				t.Errorf("image contains %s", name)
			}
		}
		var regular []string
		for name, h := range files {
			if h.Typeflag == tar.TypeReg {
				regular = append(regular, name)
			}
		}
		assert.ElementsMatch(t, []string{"airlock", "healthcheck", "etc/ssl/certs/ca-certificates.crt",
			"etc/passwd", "etc/group", "etc/nsswitch.conf"}, regular)
		assert.Equal(t, int64(0o1777), files["tmp"].Mode, "writable /tmp")
		assert.Equal(t, 65532, files["home/nonroot"].Uid)
	})

	root := t.TempDir()
	layers, err := img.Layers()
	require.NoError(t, err)
	require.Len(t, layers, 1)
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		if h.Typeflag != tar.TypeReg {
			continue
		}
		p := filepath.Join(root, filepath.FromSlash(h.Name))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		b, err := io.ReadAll(tr)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(p, b, os.FileMode(h.Mode)|0o700))
	}

	t.Run("binaries are static", func(t *testing.T) {
		for _, b := range []string{"airlock", "healthcheck"} {
			f, err := elf.Open(filepath.Join(root, b))
			require.NoError(t, err)
			for _, p := range f.Progs {
				assert.NotEqual(t, elf.PT_INTERP, p.Type, "%s needs no dynamic loader (the image has none)", b)
			}
			f.Close()
		}
	})

	t.Run("airlock runs", func(t *testing.T) {
		out, err := exec.CommandContext(t.Context(), filepath.Join(root, "airlock"), "--help").CombinedOutput()
		require.NoError(t, err, "%s", out)
		assert.Regexp(t, `(?m)^  worker\s`, string(out))
		assert.Regexp(t, `(?m)^  codec-server\s`, string(out))
	})

	t.Run("healthcheck probes", func(t *testing.T) {
		ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
		defer ok.Close()
		bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(503) }))
		defer bad.Close()
		probe := filepath.Join(root, "healthcheck")
		assert.NoError(t, exec.Command(probe, ok.URL).Run(), "2xx is healthy")
		assert.Error(t, exec.Command(probe, bad.URL).Run(), "503 is unhealthy")
		assert.Error(t, exec.Command(probe, "http://127.0.0.1:1/").Run(), "nothing listening is unhealthy")
	})
}

// extract lists the image's flattened filesystem.
func extract(t *testing.T, img v1.Image) map[string]*tar.Header {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	out := map[string]*tar.Header{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err)
		out[strings.TrimSuffix(strings.TrimPrefix(h.Name, "/"), "/")] = h
	}
}
