// Package deploycheck validates Airlock's deployment artefacts
// (docker-compose.yaml, the OCI image, the Grafana dashboard) against
// Airlock's own code. It is a separate module so that the heavy libraries
// it needs (compose-go, go-containerregistry) never enter the product's
// go.mod.
package deploycheck
