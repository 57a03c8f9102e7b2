package manifests_test

import (
	"context"
	"os"
	"testing"

	"knative.dev/pkg/apis"
	servingv1 "knative.dev/serving/pkg/apis/serving/v1"
	servingv1beta1 "knative.dev/serving/pkg/apis/serving/v1beta1"
	"sigs.k8s.io/yaml"
)

// TestServingDocumentsValidate decodes every Knative Serving document
// strictly into knative's own type and runs its SetDefaults and Validate
// as the serving webhook does on create; warnings (e.g. an insecure
// securityContext) fail too.
func TestServingDocumentsValidate(t *testing.T) {
	applied, other := files(t)
	n := 0
	for _, name := range append(applied, other...) {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, raw := range rawDocs(t, data) {
			var tm struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			if err := yaml.Unmarshal(raw, &tm); err != nil {
				t.Fatal(err)
			}
			var obj knative
			switch tm.APIVersion + " " + tm.Kind {
			case "serving.knative.dev/v1 Service":
				obj = new(servingv1.Service)
			case "serving.knative.dev/v1beta1 DomainMapping":
				obj = new(servingv1beta1.DomainMapping)
			default:
				continue
			}
			n++
			if err := yaml.UnmarshalStrict(raw, obj); err != nil {
				t.Errorf("%s: %s: %v", name, tm.Kind, err)
				continue
			}
			ctx := apis.WithinCreate(context.Background())
			obj.SetDefaults(ctx)
			if fe := obj.Validate(ctx); fe != nil {
				t.Errorf("%s: %s: %v", name, tm.Kind, fe)
			}
			if s, ok := obj.(*servingv1.Service); ok {
				// kn cannot set enableServiceLinks: Knative's default must be false.
				c := *s
				c.Spec.Template.Spec.EnableServiceLinks = nil
				c.SetDefaults(ctx)
				if e := c.Spec.Template.Spec.EnableServiceLinks; e == nil || *e {
					t.Errorf("%s: Knative's default enableServiceLinks is %v, not false", s.Name, e)
				}
			}
		}
	}
	if n < 10 {
		t.Errorf("%d Knative Serving documents, want at least 10", n)
	}
}
