// Command schemagen writes the JSON Schemas of Airlock's published workflow
// contract (package schema) into schema/. Run it from the repository root
// (`go run ./cmd/schemagen`, `make schema`) or through `go generate ./schema`.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/airlockhq/airlock/schema"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "schemagen:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("schemagen", flag.ContinueOnError)
	root := fs.String("root", ".", "the repository's root: the contract's Go source is read from it")
	out := fs.String("out", "", "where the schemas go (default: <root>/schema)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		*out = filepath.Join(*root, "schema")
	}
	return schema.Write(*root, *out)
}
