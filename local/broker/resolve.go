package broker

import (
	"fmt"
	"net/http"
	"strings"

	duckv1 "knative.dev/pkg/apis/duck/v1"
)

// Services is the all-in-one's Resolver. A ref to a Knative Service
// (serving.knative.dev, kind Service) named n goes in process to
// handlers[n]; its request URL is the one the Service has in a cluster,
// http://n.<namespace>.svc.cluster.local, plus the Destination's relative
// URI if any. An absolute URI without a ref is POSTed to. Anything else
// does not resolve.
func Services(handlers map[string]http.Handler) Resolver {
	return func(dest duckv1.Destination) (Target, error) {
		ref := dest.Ref
		if ref == nil {
			return resolveURI(dest)
		}
		if ref.Kind != "Service" || !strings.HasPrefix(ref.APIVersion, "serving.knative.dev/") {
			return Target{}, fmt.Errorf("cannot resolve %s %s in process: only Knative Services", ref.Kind, ref.Name)
		}
		h, ok := handlers[ref.Name]
		if !ok || h == nil {
			return Target{}, fmt.Errorf("no in-process handler for Knative Service %q", ref.Name)
		}
		ns := ref.Namespace
		if ns == "" {
			ns = "default"
		}
		u := "http://" + ref.Name + "." + ns + ".svc.cluster.local"
		if dest.URI != nil {
			u += "/" + strings.TrimPrefix(dest.URI.String(), "/")
		}
		return Target{Handler: h, URL: u}, nil
	}
}
