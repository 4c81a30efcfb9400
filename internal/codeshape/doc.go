// Package codeshape holds no code: its tests hold the tree to the shape
// DESIGN.md and docs/architecture.md describe (layering, what each binary
// links, function length), so that a change that breaks it fails in CI
// rather than in review.
package codeshape
