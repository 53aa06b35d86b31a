package devstack

import (
	"archive/tar"
	"bytes"
	"io"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The node's images are reproducible: built twice from the same busybox
// they have the same digest, every file dated the epoch, owned by root.
func TestNodeImagesAreReproducible(t *testing.T) {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox-static is not installed")
	}
	box1, pause1, err := nodeImages(bb)
	if err != nil {
		t.Skipf("no static busybox here: %v", err)
	}
	box2, pause2, err := nodeImages(bb)
	require.NoError(t, err)
	assert.Equal(t, box1.digest, box2.digest)
	assert.Equal(t, pause1.digest, pause2.digest)
	assert.NotEqual(t, box1.digest, pause1.digest, "pause runs another command")
	assert.Equal(t, box1.archive, box2.archive)

	layer, err := busyboxLayer(bb)
	require.NoError(t, err)
	tr := tar.NewReader(bytes.NewReader(layer))
	names := map[string]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		assert.Equal(t, time.Unix(0, 0).UTC(), h.ModTime.UTC(), h.Name)
		assert.Zero(t, h.Uid, h.Name)
		names[h.Name] = h.Typeflag
	}
	assert.Equal(t, byte(tar.TypeReg), names["bin/busybox"])
	for _, applet := range []string{"bin/sh", "bin/wget", "bin/sleep", "bin/timeout"} {
		assert.Equal(t, byte(tar.TypeSymlink), names[applet], applet)
	}
}
