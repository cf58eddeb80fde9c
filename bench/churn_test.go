package bench

import (
	"testing"

	networking "istio.io/api/networking/v1alpha3"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/model"
)

// What churn writes is valid config that alternates between two
// versions: a ServiceEntry of the sidecars' namespace, or, hidden, an
// AuthorizationPolicy of a namespace without workloads.
func TestChurnEntry(t *testing.T) {
	for _, hidden := range []bool{false, true} {
		versions := map[string]bool{}
		for n := range 2 {
			data := churnEntry(n, hidden)
			set, findings := config.Parse("churn.yaml", data)
			for _, f := range findings {
				if f.Severity == model.SeverityError {
					t.Fatalf("hidden=%v change %d: %v", hidden, n, f)
				}
			}
			if len(set.Resources) != 1 {
				t.Fatalf("hidden=%v change %d: %d resources, want 1", hidden, n, len(set.Resources))
			}
			r := set.Resources[0]
			versions[string(data)] = true
			switch _, isSE := r.Spec.(*networking.ServiceEntry); {
			case !hidden && (!isSE || r.Namespace != benchNS):
				t.Errorf("change %d: a %s of %s, want a ServiceEntry of %s", n, r.Kind, r.Namespace, benchNS)
			case hidden && (r.Kind != config.KindAuthorizationPolicy || r.Namespace == benchNS):
				t.Errorf("hidden change %d: a %s of %s, want an AuthorizationPolicy of another namespace", n, r.Kind, r.Namespace)
			}
		}
		if len(versions) != 2 {
			t.Errorf("hidden=%v: %d versions, want two that alternate", hidden, len(versions))
		}
	}
}
