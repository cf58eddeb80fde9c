package model

import (
	security "istio.io/api/security/v1beta1"
)

// AuthorizationPolicy is a validated Istio AuthorizationPolicy
// (security.istio.io/v1 and v1beta1 share these Go types).
type AuthorizationPolicy = Config[*security.AuthorizationPolicy]

// RequestAuthentication is a validated Istio RequestAuthentication.
type RequestAuthentication = Config[*security.RequestAuthentication]
