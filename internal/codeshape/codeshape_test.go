package codeshape_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// root is the module's root directory.
func root(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// goList runs go list in the module root.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list"}, args...)...)
	cmd.Dir = root(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %v: %v", args, err)
	}
	return strings.Fields(string(out))
}

// MaxFuncLines bounds a function outside tests.
const MaxFuncLines = 80

func TestNoLongFunctions(t *testing.T) {
	fset := token.NewFileSet()
	err := filepath.WalkDir(root(t), func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); name == "deploy" || name == "node_modules" || strings.HasPrefix(name, ".") && path != root(t) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			if n := fset.Position(fn.End()).Line - fset.Position(fn.Pos()).Line + 1; n > MaxFuncLines {
				rel, _ := filepath.Rel(root(t), path)
				t.Errorf("%s: %s is %d lines; split it (at most %d)", rel, fn.Name.Name, n, MaxFuncLines)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestServiceBinariesLinkOnlyWhatTheyRun: only cmd/tenancy (dev) embeds
// the NATS server; the HTTP layer is the API's alone, the sagas the
// provisioner's, the delivery worker the webhooker's.
func TestServiceBinariesLinkOnlyWhatTheyRun(t *testing.T) {
	const mod = "github.com/tenancyhq/tenancy/"
	forbidden := map[string][]string{
		"api":         {"github.com/nats-io/nats-server/v2/server", mod + "internal/saga", mod + "internal/delivery", mod + "internal/run/dev"},
		"projector":   {"github.com/nats-io/nats-server/v2/server", "github.com/labstack/echo/v4", mod + "internal/httpapi", mod + "internal/saga", mod + "internal/delivery", mod + "internal/keycloak", mod + "internal/billing"},
		"provisioner": {"github.com/nats-io/nats-server/v2/server", "github.com/labstack/echo/v4", mod + "internal/httpapi", mod + "internal/delivery"},
		"webhooker":   {"github.com/nats-io/nats-server/v2/server", "github.com/labstack/echo/v4", mod + "internal/httpapi", mod + "internal/saga", mod + "internal/keycloak", mod + "internal/billing"},
	}
	for binary, banned := range forbidden {
		deps := goList(t, "-deps", "./cmd/"+binary)
		for _, b := range banned {
			if slices.Contains(deps, b) {
				t.Errorf("cmd/%s links %s, which it does not run", binary, b)
			}
		}
	}
}

// TestLayering: the HTTP layer talks to the use cases, never to pgx or
// NATS; the domain, the event contracts and the subscriber package import
// none of the infrastructure.
func TestLayering(t *testing.T) {
	for pkg, banned := range map[string][]string{
		"./internal/httpapi": {"github.com/jackc/pgx", "github.com/nats-io", "github.com/tenancyhq/tenancy/internal/eventstore", "github.com/tenancyhq/tenancy/internal/postgres", "github.com/tenancyhq/tenancy/internal/projection"},
		"./pkg/domain":       {"github.com/jackc/pgx", "github.com/nats-io", "github.com/labstack/echo", "net/http", "github.com/tenancyhq/tenancy/internal"},
		"./pkg/events":       {"github.com/jackc/pgx", "github.com/nats-io", "github.com/labstack/echo", "net/http", "github.com/tenancyhq/tenancy/internal"},
		"./pkg/subscriber":   {"github.com/jackc/pgx", "github.com/nats-io", "github.com/labstack/echo", "github.com/tenancyhq/tenancy/internal"},
	} {
		for _, imp := range goList(t, "-f", `{{join .Imports " "}}`, pkg) {
			for _, b := range banned {
				if strings.HasPrefix(imp, b) {
					t.Errorf("%s imports %s", pkg, imp)
				}
			}
		}
	}
}
