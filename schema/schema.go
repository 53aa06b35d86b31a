// Package schema generates the published JSON Schemas of Airlock's workflow
// contract from the Go types in contract/ and policy/, so agents in other
// languages can check what they send (a CycleRequest, a Decision) and read
// what they get back (a CycleResult) without reading Go. The generated
// *.schema.json files live in this directory; the package's test fails when
// they are not what the Go types generate now. Regenerate with
// `go generate ./schema` (or `make schema`).
//
// Descriptions are the Go doc comments, so generation reads the contract's
// source: run it from the repository.
package schema

//go:generate go run ../cmd/schemagen -root ..

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/invopop/jsonschema"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
)

// BaseURL is where the schemas' $id values point. The ids are names, never
// fetched: validators load the files from schema/.
const BaseURL = "https://airlock.dev/schema/"

// module is the Go module whose source holds the doc comments.
const module = "github.com/airlockhq/airlock"

// sourceDirs are the packages (relative to the repository root) whose doc
// comments and string constants describe the contract's types.
var sourceDirs = []string{"contract", "policy"}

// Spec is one published schema: the Go type it is generated from.
type Spec struct {
	// File is the schema's file name in schema/.
	File  string
	Title string
	Type  reflect.Type
	// Output: the worker produces it with encoding/json, so a nil slice or
	// map without omitempty is written as null; and new fields may appear
	// (additional properties are allowed, readers ignore what they do not
	// know). Inputs are closed: an unknown key is a typo the worker would
	// silently drop, and outside what the agent signs.
	Output bool
}

// Specs are the published schemas.
var Specs = []Spec{
	{File: "cycle-request.schema.json", Title: "Airlock CycleRequest", Type: reflect.TypeFor[contract.CycleRequest]()},
	{File: "cycle-result.schema.json", Title: "Airlock CycleResult", Type: reflect.TypeFor[contract.CycleResult](), Output: true},
	{File: "decision.schema.json", Title: "Airlock Decision", Type: reflect.TypeFor[contract.Decision]()},
}

// File is one generated schema.
type File struct {
	Name string
	Data []byte
}

// Generate returns every schema of Specs, reading the doc comments from the
// source under root (the repository's root directory).
func Generate(root string) ([]File, error) {
	src, err := readSource(root)
	if err != nil {
		return nil, err
	}
	files := make([]File, 0, len(Specs))
	used := map[int]bool{}
	for _, s := range Specs {
		data, err := generate(s, src, used)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.File, err)
		}
		files = append(files, File{Name: s.File, Data: data})
	}
	for i, rf := range refinements {
		if !used[i] {
			return nil, fmt.Errorf("refinement of %s.%s: no schema holds the type", rf.typ, rf.field)
		}
	}
	return files, nil
}

// defNames are the $defs names of types whose Go name another contract
// type already uses.
var defNames = map[reflect.Type]string{
	reflect.TypeFor[policy.Decision](): "PolicyDecision",
}

var (
	jsonMarshaler = reflect.TypeFor[json.Marshaler]()
	textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()
	timeType      = reflect.TypeFor[time.Time]()
)

func generate(s Spec, src *source, used map[int]bool) ([]byte, error) {
	var errs []error
	named := map[string]reflect.Type{} // $defs name -> Go type
	enums := map[string]reflect.Type{} // enum $defs used
	r := &jsonschema.Reflector{
		ExpandedStruct:            true,
		AllowAdditionalProperties: s.Output,
		Namer: func(t reflect.Type) string {
			name := defName(t)
			if _, ok := mapped[t]; ok || name == "" { // mapped types are written inline
				return ""
			}
			if prev, ok := named[name]; ok && prev != t {
				errs = append(errs, fmt.Errorf("%s and %s would share $defs name %q: add one to defNames", prev, t, name))
			}
			named[name] = t
			return name
		},
		Mapper: func(t reflect.Type) *jsonschema.Schema {
			if m, ok := mapped[t]; ok {
				return m()
			}
			if _, ok := src.enums[t.PkgPath()+"."+t.Name()]; ok && t.Kind() == reflect.String {
				name := defName(t)
				enums[name] = t
				return &jsonschema.Schema{Ref: "#/$defs/" + name}
			}
			if t != timeType && (t.Implements(jsonMarshaler) || reflect.PointerTo(t).Implements(jsonMarshaler) ||
				t.Implements(textMarshaler) || reflect.PointerTo(t).Implements(textMarshaler)) {
				errs = append(errs, fmt.Errorf("%s has its own JSON encoding the reflector cannot see: describe it in mapped", t))
			}
			return nil
		},
		LookupComment: func(t reflect.Type, field string) string {
			return src.comments[t.PkgPath()+"."+t.Name()+"."+field]
		},
	}
	root := r.ReflectFromType(s.Type)
	root.ID = jsonschema.ID(BaseURL + s.File)
	root.Title = s.Title
	for name, t := range enums {
		root.Definitions[name] = src.enumSchema(t)
		named[name] = t
	}
	if s.Output {
		nullable(root, named, s.Type)
	}
	if err := refine(root, s.Type, named, used); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(root, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	return append(unescapeHTML(b), '\n'), nil
}

// defName is a named type's name in $defs.
func defName(t reflect.Type) string {
	if n, ok := defNames[t]; ok {
		return n
	}
	return t.Name()
}

// defOf is the schema of t within root: root itself or one of its $defs.
func defOf(root *jsonschema.Schema, rootType reflect.Type, names map[string]reflect.Type, t reflect.Type) *jsonschema.Schema {
	if t == rootType {
		return root
	}
	if names[defName(t)] != t {
		return nil
	}
	return root.Definitions[defName(t)]
}

// mapped are the types whose JSON the reflector would get wrong from their
// Go kind: they encode themselves differently.
var mapped = map[reflect.Type]func() *jsonschema.Schema{
	// policy.Duration marshals as time.Duration.String().
	reflect.TypeFor[policy.Duration](): func() *jsonschema.Schema {
		return &jsonschema.Schema{Type: "string", Pattern: `^(0|-?([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$`,
			Description: `A duration as Go writes it: "90s", "5m0s", "1h30m0s".`, Examples: []any{"5m0s"}}
	},
	// time.Duration has no MarshalJSON: it is its int64 of nanoseconds.
	reflect.TypeFor[time.Duration](): func() *jsonschema.Schema {
		return &jsonschema.Schema{Type: "integer", Description: "A duration in nanoseconds."}
	},
}

// nullable marks, in an output's schema, the slices and maps that Go writes
// as null when nil (no omitempty): a cycle's actions before it is planned.
func nullable(root *jsonschema.Schema, named map[string]reflect.Type, rootType reflect.Type) {
	for _, t := range named {
		def := defOf(root, rootType, named, t)
		if def == nil || t.Kind() != reflect.Struct || def.Properties == nil {
			continue
		}
		for _, f := range jsonFields(t) {
			if f.omit || (f.typ.Kind() != reflect.Slice && f.typ.Kind() != reflect.Map) {
				continue
			}
			p, ok := def.Properties.Get(f.name)
			if !ok {
				continue
			}
			desc := p.Description
			p.Description = ""
			def.Properties.Set(f.name, &jsonschema.Schema{Description: desc, AnyOf: []*jsonschema.Schema{p, {Type: "null"}}})
		}
	}
}

type jsonField struct {
	name string
	typ  reflect.Type
	omit bool // omitempty or omitzero
}

// jsonFields lists a struct's fields as encoding/json writes them.
func jsonFields(t reflect.Type) []jsonField {
	var out []jsonField
	for f := range t.Fields() {
		if !f.IsExported() && !f.Anonymous {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			out = append(out, jsonFields(f.Type)...)
			continue
		}
		if name == "" {
			name = f.Name
		}
		o := strings.Split(opts, ",")
		out = append(out, jsonField{name: name, typ: f.Type, omit: slices.Contains(o, "omitempty") || slices.Contains(o, "omitzero")})
	}
	return out
}

// source is what the contract's Go source says beyond its types: doc
// comments (type and field) and the string constants of each named type.
type source struct {
	// comments by "pkgpath.Type." (the type) and "pkgpath.Type.Field".
	comments map[string]string
	// enums by "pkgpath.Type", in source order.
	enums map[string][]enumValue
	docs  map[string]string // type docs by "pkgpath.Type"
}

type enumValue struct {
	value, doc string
}

func readSource(root string) (*source, error) {
	src := &source{comments: map[string]string{}, enums: map[string][]enumValue{}, docs: map[string]string{}}
	fset := token.NewFileSet()
	for _, dir := range sourceDirs {
		pkg := module + "/" + dir
		paths, err := filepath.Glob(filepath.Join(root, dir, "*.go"))
		if err != nil {
			return nil, err
		}
		if len(paths) == 0 {
			return nil, fmt.Errorf("no Go source in %s: run from the repository (root %q)", filepath.Join(root, dir), root)
		}
		slices.Sort(paths)
		for _, p := range paths {
			if strings.HasSuffix(p, "_test.go") {
				continue
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, err
			}
			f, err := parser.ParseFile(fset, path.Base(filepath.ToSlash(p)), b, parser.ParseComments)
			if err != nil {
				return nil, err
			}
			src.collect(pkg, f)
		}
	}
	return src, nil
}

func (s *source) collect(pkg string, f *ast.File) {
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok {
			continue
		}
		for _, spec := range gd.Specs {
			switch sp := spec.(type) {
			case *ast.TypeSpec:
				doc := sp.Doc
				if doc == nil && !gd.Lparen.IsValid() {
					doc = gd.Doc
				}
				key := pkg + "." + sp.Name.Name
				s.docs[key] = text(doc)
				s.comments[key+"."] = text(doc)
				st, ok := sp.Type.(*ast.StructType)
				if !ok {
					continue
				}
				for _, fld := range st.Fields.List {
					c := fld.Doc
					if c == nil {
						c = fld.Comment
					}
					for _, n := range fld.Names {
						s.comments[key+"."+n.Name] = text(c)
					}
				}
			case *ast.ValueSpec:
				typ, ok := sp.Type.(*ast.Ident)
				if gd.Tok != token.CONST || !ok {
					continue
				}
				for i := range sp.Names {
					if i >= len(sp.Values) {
						break
					}
					lit, ok := sp.Values[i].(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						continue
					}
					v, err := strconv.Unquote(lit.Value)
					if err != nil {
						continue
					}
					c := sp.Doc
					if c == nil {
						c = sp.Comment
					}
					key := pkg + "." + typ.Name
					s.enums[key] = append(s.enums[key], enumValue{value: v, doc: text(c)})
				}
			}
		}
	}
}

// enumSchema is a named string type's schema: its constants, with what
// their comments say.
func (s *source) enumSchema(t reflect.Type) *jsonschema.Schema {
	key := t.PkgPath() + "." + t.Name()
	vals := s.enums[key]
	sch := &jsonschema.Schema{Type: "string", Description: s.docs[key]}
	var notes []string
	for _, v := range vals {
		sch.Enum = append(sch.Enum, v.value)
		if v.doc != "" {
			notes = append(notes, fmt.Sprintf("%q: %s", v.value, v.doc))
		}
	}
	if len(notes) > 0 {
		sch.Description = strings.TrimSpace(sch.Description + "\n\n" + strings.Join(notes, "\n"))
	}
	return sch
}

// text is a comment as prose: its lines joined, paragraphs kept.
func text(c *ast.CommentGroup) string {
	if c == nil {
		return ""
	}
	var paras []string
	for p := range strings.SplitSeq(strings.TrimSpace(c.Text()), "\n\n") {
		paras = append(paras, strings.Join(strings.Fields(p), " "))
	}
	return strings.Join(paras, "\n\n")
}

// unescapeHTML undoes encoding/json's escaping of <, > and & in strings
// (the schema's nested values are encoded by json.Marshal, whatever the
// outer encoder says): "cycle/<agent_id>" reads better than its escapes.
func unescapeHTML(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' || i+1 >= len(b) {
			out = append(out, b[i])
			continue
		}
		switch s := string(b[i+1 : min(i+6, len(b))]); s {
		case "u003c", "u003e", "u0026":
			out = append(out, map[string]byte{"u003c": '<', "u003e": '>', "u0026": '&'}[s])
			i += 5
		default: // another escape, copied whole so its backslash is not read again
			out = append(out, b[i], b[i+1])
			i++
		}
	}
	return out
}

// Write generates every schema into dir.
func Write(root, dir string) error {
	files, err := Generate(root)
	if err != nil {
		return err
	}
	for _, f := range files {
		p := filepath.Join(dir, f.Name)
		if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, f.Data) {
			continue
		}
		if err := os.WriteFile(p, f.Data, 0o644); err != nil {
			return fmt.Errorf("write schema: %w", err)
		}
	}
	return nil
}
