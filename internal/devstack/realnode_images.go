package devstack

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"
)

// Images of the real node. There is no registry: both are built here, byte
// for byte the same from the same busybox binary, and imported into
// containerd before the kubelet starts.
const (
	// nodeImageRepo is the repository of the busybox image; Pods reference
	// it by digest (Stack.BusyboxImage), as Airlock requires.
	nodeImageRepo = "airlock.local/busybox"
	// pauseImageRepo is the sandbox ("pause") image: busybox running sleep.
	pauseImageRepo = "airlock.local/pause"
	nodeImageTag   = "v1"
)

// imageEpoch is the time of every file and of the image configs, so the
// digest depends on the busybox binary alone.
var imageEpoch = time.Unix(0, 0).UTC()

// ociImage is one image as an OCI archive (a tar of an OCI layout) and the
// digest of its manifest.
type ociImage struct {
	archive []byte
	digest  string // sha256:<hex> of the manifest
}

// busyboxLayer is an uncompressed layer holding busybox-static as
// /bin/busybox, a symlink per applet and the empty directories runc mounts
// over (a read-only root cannot get them later).
func busyboxLayer(busybox string) ([]byte, error) {
	bin, err := os.ReadFile(busybox)
	if err != nil {
		return nil, fmt.Errorf("read busybox: %w", err)
	}
	// The image has nothing else: a dynamically linked busybox would not start.
	if f, err := elf.Open(busybox); err != nil {
		return nil, fmt.Errorf("read busybox: %w", err)
	} else {
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				return nil, fmt.Errorf("%s is dynamically linked: install busybox-static", busybox)
			}
		}
	}
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("list busybox applets: %w", err)
	}
	applets := strings.Fields(string(out))
	slices.Sort(applets)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := func(h *tar.Header) error {
		h.ModTime, h.Uname, h.Gname, h.Format = imageEpoch, "", "", tar.FormatPAX
		return tw.WriteHeader(h)
	}
	for _, d := range []string{"bin/", "dev/", "etc/", "proc/", "sys/", "tmp/"} {
		mode := int64(0o755)
		if d == "tmp/" {
			mode = 0o1777
		}
		if err := hdr(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: mode}); err != nil {
			return nil, err
		}
	}
	if err := hdr(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(bin))}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(bin); err != nil {
		return nil, err
	}
	for _, a := range applets {
		if a == "busybox" || strings.Contains(a, "/") {
			continue
		}
		if err := hdr(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777}); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// buildOCIImage wraps layer into an image whose process is cmd, as an OCI
// archive whose one manifest is named tag.
func buildOCIImage(layer []byte, cmd []string, tag string) (ociImage, error) {
	blobs := map[string][]byte{}
	put := func(b []byte) (string, int) {
		sum := sha256.Sum256(b)
		d := "sha256:" + hex.EncodeToString(sum[:])
		blobs[d] = b
		return d, len(b)
	}
	layerDigest, layerSize := put(layer)
	config, err := json.Marshal(map[string]any{
		"created":      imageEpoch.Format(time.RFC3339),
		"architecture": "amd64",
		"os":           "linux",
		"config": map[string]any{
			"Env":        []string{"PATH=/bin"},
			"Cmd":        cmd,
			"User":       "65532:65532",
			"WorkingDir": "/",
		},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{layerDigest}},
	})
	if err != nil {
		return ociImage{}, err
	}
	configDigest, configSize := put(config)
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": configDigest, "size": configSize},
		"layers":        []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layerDigest, "size": layerSize}},
	})
	if err != nil {
		return ociImage{}, err
	}
	manifestDigest, manifestSize := put(manifest)
	index, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"manifests": []any{map[string]any{
			"mediaType":   "application/vnd.oci.image.manifest.v1+json",
			"digest":      manifestDigest,
			"size":        manifestSize,
			"platform":    map[string]string{"architecture": "amd64", "os": "linux"},
			"annotations": map[string]string{"org.opencontainers.image.ref.name": tag},
		}},
	})
	if err != nil {
		return ociImage{}, err
	}

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	file := func(name string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: imageEpoch, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	if err := file("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return ociImage{}, err
	}
	if err := file("index.json", index); err != nil {
		return ociImage{}, err
	}
	for _, d := range slices.Sorted(maps.Keys(blobs)) {
		if err := file("blobs/sha256/"+strings.TrimPrefix(d, "sha256:"), blobs[d]); err != nil {
			return ociImage{}, err
		}
	}
	if err := tw.Close(); err != nil {
		return ociImage{}, err
	}
	return ociImage{archive: buf.Bytes(), digest: manifestDigest}, nil
}

// nodeImages builds the busybox and pause images from the busybox binary.
func nodeImages(busybox string) (box, pause ociImage, err error) {
	layer, err := busyboxLayer(busybox)
	if err != nil {
		return ociImage{}, ociImage{}, err
	}
	if box, err = buildOCIImage(layer, []string{"sh"}, nodeImageTag); err != nil {
		return ociImage{}, ociImage{}, err
	}
	// PID 1 of the sandbox only has to exist; containerd stops it with SIGKILL.
	if pause, err = buildOCIImage(layer, []string{"sleep", "2147483647"}, nodeImageTag); err != nil {
		return ociImage{}, ociImage{}, err
	}
	return box, pause, nil
}
