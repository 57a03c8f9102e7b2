package manifests_test

import (
	"strconv"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// Every pod that runs one of kmep's binaries carries the Prometheus scrape
// annotations, naming a port the binary serves /metrics on: a Knative
// Service's user container port ($PORT, 8080 unless the container names
// another), or a port the Deployment's or DaemonSet's container declares.
func TestEveryBinaryIsScraped(t *testing.T) {
	applied, _ := files(t)
	docs := loadDocs(t, applied)
	seen := 0
	for _, d := range docs {
		var ann map[string]string
		var spec *corev1.PodSpec
		knative := false
		switch o := d.obj.(type) {
		case *knService:
			ann, spec, knative = o.Spec.Template.Annotations, &o.Spec.Template.Spec.PodSpec, true
		case *appsv1.Deployment:
			ann, spec = o.Spec.Template.Annotations, &o.Spec.Template.Spec
		case *appsv1.DaemonSet:
			ann, spec = o.Spec.Template.Annotations, &o.Spec.Template.Spec
		default:
			continue
		}
		var ports []int32
		kmep := false
		for _, c := range spec.Containers {
			if len(c.Image) > 5 && c.Image[:5] == "ko://" {
				kmep = true
				for _, p := range c.Ports {
					ports = append(ports, p.ContainerPort)
				}
			}
		}
		if !kmep {
			continue // Redis, MinIO: not kmep's binaries
		}
		seen++
		t.Run(d.String(), func(t *testing.T) {
			if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/path"] != "/metrics" {
				t.Fatalf("pod template annotations %v: want prometheus.io/scrape \"true\" and prometheus.io/path /metrics", ann)
			}
			port, err := strconv.Atoi(ann["prometheus.io/port"])
			if err != nil {
				t.Fatalf("prometheus.io/port %q", ann["prometheus.io/port"])
			}
			if knative && len(ports) == 0 {
				ports = []int32{8080}
			}
			for _, p := range ports {
				if int(p) == port {
					return
				}
			}
			t.Errorf("prometheus.io/port %d is none of the container's ports %v", port, ports)
		})
	}
	if seen < 12 {
		t.Errorf("only %d workloads of kmep's binaries found", seen)
	}
}
