package model

import (
	security "istio.io/api/security/v1beta1"
)

// PeerAuthentication is a validated Istio PeerAuthentication
// (security.istio.io/v1 and v1beta1 share these Go types).
type PeerAuthentication = Config[*security.PeerAuthentication]
