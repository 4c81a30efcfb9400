// Package deploy holds no code: it is where the deployment files are tested.
// docker-compose.yml (and deploy/compose/cluster.yml) are loaded with the
// Compose specification's own loader, and the Kubernetes manifests under
// deploy/kubernetes are rendered with kustomize and validated against the
// Kubernetes JSON schemas vendored in testdata, plus the invariants the
// services rely on (probes, resources, PodDisruptionBudgets, documented
// configuration, no committed secrets).
package deploy
