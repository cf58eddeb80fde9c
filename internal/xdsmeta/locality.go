package xdsmeta

import (
	"fmt"
	"strings"
)

// Localities are written "region/zone/subzone", the zone and subzone
// optional, as in Istio: a Workload's spec.locality, weft-proxy
// --locality, and how the control plane and the sidecar show one.

// ParseLocality splits a locality into its parts; missing ones are empty.
func ParseLocality(s string) (region, zone, subzone string) {
	parts := append(strings.SplitN(s, "/", 3), "", "")
	return parts[0], parts[1], parts[2]
}

// FormatLocality joins a locality's parts without trailing empty ones.
func FormatLocality(region, zone, subzone string) string {
	return strings.TrimRight(region+"/"+zone+"/"+subzone, "/")
}

// CheckLocality says what is wrong with a locality a user wrote: at most
// three parts, each a non-empty name without '*' or spaces.
func CheckLocality(s string) error {
	parts := strings.Split(s, "/")
	if len(parts) > 3 {
		return fmt.Errorf("locality %q has %d parts; write region/zone/subzone (zone and subzone optional)", s, len(parts))
	}
	for _, p := range parts {
		if p == "" || strings.ContainsAny(p, "* \t") {
			return fmt.Errorf("locality %q: every part must be a non-empty name without '*' or spaces; write region/zone/subzone", s)
		}
	}
	return nil
}
