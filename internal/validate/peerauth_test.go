package validate

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/model"
)

// TestPeerAuthenticationInSnapshot checks that valid PeerAuthentications
// (security.istio.io/v1 and v1beta1) reach the snapshot sorted, and the
// findings: portLevelMtls without selector, a second selector-less policy
// in a namespace, unknown fields and modes.
func TestPeerAuthenticationInSnapshot(t *testing.T) {
	set, _ := config.Parse("pa.yaml", []byte(`
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: metrics, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  portLevelMtls:
    9091: {mode: DISABLE}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: ports, namespace: shop}
spec:
  portLevelMtls:
    9091: {mode: DISABLE}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: a, namespace: istio-system}
spec:
  mtls: {mode: PERMISSIVE}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: bad, namespace: shop}
spec:
  mtls: {mode: SOMETIMES}
  action: ALLOW
`))
	snap := NewBuilder().Build(set, nil)
	var names []string
	for _, pa := range snap.PeerAuthentications {
		names = append(names, pa.Namespace+"/"+pa.Name+"="+pa.Spec.GetMtls().GetMode().String())
	}
	if diff := cmp.Diff([]string{"istio-system/default=STRICT", "shop/metrics=UNSET"}, names); diff != "" {
		t.Errorf("in force (-want +got):\n%s", diff)
	}
	var msgs []string
	for _, f := range Findings(snap) {
		if f.Severity == model.SeverityError {
			msgs = append(msgs, f.String())
		}
	}
	want := []string{
		`pa.yaml:21: PeerAuthentication shop/ports: spec.portLevelMtls[9091]: portLevelMtls needs a selector (spec.selector.matchLabels) naming the workloads whose port 9091 it sets`,
		`pa.yaml:27: PeerAuthentication istio-system/a: spec.selector: namespace istio-system already has a PeerAuthentication without selector, PeerAuthentication istio-system/default (pa.yaml:2); keep one`,
		`pa.yaml:33: PeerAuthentication shop/bad: spec.mtls.mode: unknown value "SOMETIMES"; use one of UNSET, DISABLE, PERMISSIVE, STRICT`,
		`pa.yaml:34: PeerAuthentication shop/bad: spec.action: unknown field "action"`,
	}
	if diff := cmp.Diff(want, msgs); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}
