// Package deploy holds vigil's deployment artefacts: Kubernetes manifests
// (kustomize), NATS Helm values, the systemd unit, the Dockerfile and the
// Grafana dashboard. It has no code; its tests build the artefacts the way
// a user would and check them against the code they deploy, so that
// neither can drift from the other unnoticed.
package deploy
