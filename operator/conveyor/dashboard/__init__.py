"""The web dashboard: `kubectl conveyor dashboard` (local, the viewer's own kubeconfig and RBAC) or
`conveyor dashboard` in the cluster (read-only, its own least-privilege ServiceAccount)."""
