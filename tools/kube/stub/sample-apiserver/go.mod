// Stub: k8s.io/sample-apiserver is required by k8s.io/kubernetes but not
// served by the module proxy; nothing we build imports it.
module k8s.io/sample-apiserver

go 1.26
