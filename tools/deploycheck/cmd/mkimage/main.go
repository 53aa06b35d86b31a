// Command mkimage builds Airlock's OCI image without a container daemon
// (make image): static binaries, then one reproducible layer. It writes an
// OCI image layout and a `docker load`-able tarball, and prints the digest.
//
//	go run ./cmd/mkimage -repo ../.. -out ../../bin
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/airlockhq/airlock/tools/deploycheck/image"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	repo := flag.String("repo", "../..", "the airlock repository")
	out := flag.String("out", "../../bin", "output directory")
	tag := flag.String("tag", "airlock:dev", "tag inside the tarball (docker load)")
	arch := flag.String("arch", "amd64", "GOARCH")
	cacerts := flag.String("cacerts", image.CACerts, "CA bundle copied into the image")
	flag.Parse()

	epoch := time.Unix(0, 0).UTC()
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH: %w", err)
		}
		epoch = time.Unix(n, 0).UTC()
	}
	repoAbs, err := filepath.Abs(*repo)
	if err != nil {
		return err
	}
	work := filepath.Join(*out, "image-build")
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	bin, probe := filepath.Join(work, "airlock"), filepath.Join(work, "healthcheck")
	if err := image.GoBuild(ctx, repoAbs, "./cmd/airlock", mustAbs(bin), *arch); err != nil {
		return err
	}
	if err := image.GoBuild(ctx, filepath.Join(repoAbs, "tools", "deploycheck"), "./cmd/healthcheck", mustAbs(probe), *arch); err != nil {
		return err
	}
	img, err := image.Build(image.Options{Binary: bin, Healthcheck: probe, CACerts: *cacerts, Epoch: epoch, Arch: *arch})
	if err != nil {
		return err
	}
	ref, err := name.NewTag(*tag)
	if err != nil {
		return err
	}
	tarPath := filepath.Join(*out, "airlock-image.tar")
	if err := tarball.WriteToFile(tarPath, ref, img); err != nil {
		return err
	}
	dir := filepath.Join(*out, "airlock-oci")
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": ref.TagStr()})); err != nil {
		return err
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("image %s\n  OCI layout  %s\n  tarball     %s (docker load -i)\n", d, dir, tarPath)
	return nil
}

func mustAbs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		panic(err)
	}
	return a
}
