package bench

import (
	"testing"

	networking "istio.io/api/networking/v1alpha3"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/model"
)

// The ServiceEntry churn writes is valid config whose host alternates;
// hidden, it is exported to no namespace, so no sidecar sees it.
func TestChurnEntry(t *testing.T) {
	for _, hidden := range []bool{false, true} {
		hosts := map[string]bool{}
		for n := range 2 {
			set, findings := config.Parse("churn.yaml", churnEntry(n, hidden))
			for _, f := range findings {
				if f.Severity == model.SeverityError {
					t.Fatalf("hidden=%v change %d: %v", hidden, n, f)
				}
			}
			if len(set.Resources) != 1 {
				t.Fatalf("hidden=%v change %d: %d resources, want 1", hidden, n, len(set.Resources))
			}
			se, ok := set.Resources[0].Spec.(*networking.ServiceEntry)
			if !ok {
				t.Fatalf("hidden=%v change %d: a %T, want a ServiceEntry", hidden, n, set.Resources[0].Spec)
			}
			hosts[se.GetHosts()[0]] = true
			if got := se.GetExportTo(); hidden != (len(got) == 1 && got[0] == "~") {
				t.Errorf("hidden=%v change %d: exportTo %q", hidden, n, got)
			}
		}
		if len(hosts) != 2 {
			t.Errorf("hidden=%v: hosts %v, want two that alternate", hidden, hosts)
		}
	}
}
