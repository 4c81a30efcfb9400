// Package deploy holds no code: it is where the deployment files are tested.
// docker-compose.yml (and deploy/compose/cluster.yml) are loaded with the
// Compose specification's own loader, and the Kubernetes manifests under
// deploy/kubernetes are rendered with kustomize and validated against the
// Kubernetes JSON schemas vendored in testdata, plus the invariants the
// services rely on (probes, resources, PodDisruptionBudgets, documented
// configuration, no committed secrets).
//
// deploy is a Go module of its own (deploy/go.mod), so that the compose,
// kustomize, kubeconform and JSON Schema libraries these tests need stay out
// of the binaries' dependency graph. It requires the root module through a
// replace directive (../) for internal/config's documented variables. The
// root's ./... does not reach it: run `make test-deploy`, or `go test ./...`
// in this directory.
package deploy
