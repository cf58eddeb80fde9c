package validate

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"weft.dev/weft/internal/model"
	"weft.dev/weft/internal/xdsmeta"
)

// checkLocality checks a workload's locality, "region/zone/subzone" with
// the zone and subzone optional.
func checkLocality(rep *reporter, f, loc string) {
	if loc == "" {
		return
	}
	if err := xdsmeta.CheckLocality(loc); err != nil {
		rep.errorf(f, "%v", err)
	}
}

// checkLocalityPattern checks a locality of a distribute rule: parts
// separated by '/', where "*" may stand for the last part given and
// everything below it.
func checkLocalityPattern(rep *reporter, f, pattern string) {
	parts := strings.Split(pattern, "/")
	if pattern == "" || len(parts) > 3 {
		rep.errorf(f, "locality %q: write region/zone/subzone, where \"*\" may replace the last part given (\"us-east/*\")", pattern)
		return
	}
	for i, p := range parts {
		switch {
		case p == "":
			rep.errorf(f, "locality %q has an empty part; write region/zone/subzone", pattern)
			return
		case p == "*" && i != len(parts)-1:
			rep.errorf(f, "locality %q: \"*\" may only be the last part (\"us-east/*\", not \"*/zone1\")", pattern)
			return
		case p != "*" && strings.ContainsAny(p, "* \t"):
			rep.errorf(f, "locality %q: a part is a name or \"*\", not %q", pattern, p)
			return
		}
	}
}

// checkLocalityLb checks a traffic policy's loadBalancer.localityLbSetting.
func checkLocalityLb(rep *reporter, f string, s *networking.LocalityLoadBalancerSetting) {
	if s == nil {
		return
	}
	n := 0
	for _, set := range []bool{len(s.GetDistribute()) > 0, len(s.GetFailover()) > 0, len(s.GetFailoverPriority()) > 0} {
		if set {
			n++
		}
	}
	if n > 1 {
		rep.errorf(f, "set only one of distribute, failover and failoverPriority")
	}
	seen := map[string]bool{}
	for i, l := range s.GetFailoverPriority() {
		lf := fmt.Sprintf("%s.failoverPriority[%d]", f, i)
		key, value, hasValue := strings.Cut(l, "=")
		switch {
		case !validLabelKey(key):
			rep.errorf(lf, "%q is not a label key (or key=value); write a label such as topology.istio.io/network or version", l)
		case hasValue && !validLabelValue(value):
			rep.errorf(lf, "%q: %q is not a label value", l, value)
		case seen[key]:
			rep.errorf(lf, "label %s is listed twice; list each label once, most important first", key)
		}
		seen[key] = true
	}
	if s.GetEnabled() != nil && !s.GetEnabled().GetValue() {
		return
	}
	for i, d := range s.GetDistribute() {
		df := fmt.Sprintf("%s.distribute[%d]", f, i)
		if d.GetFrom() == "" {
			rep.errorf(df+".from", "from is required: the locality of the clients this rule applies to (\"us-east/zone1/*\")")
		} else {
			checkLocalityPattern(rep, df+".from", d.GetFrom())
		}
		if len(d.GetTo()) == 0 {
			rep.errorf(df+".to", "to is required: the localities that get these clients' traffic, with their percentages")
			continue
		}
		var sum uint32
		for _, to := range slices.Sorted(maps.Keys(d.GetTo())) {
			checkLocalityPattern(rep, fmt.Sprintf("%s.to[%s]", df, to), to)
			sum += d.GetTo()[to]
		}
		if sum != 100 {
			rep.errorf(df+".to", "the weights add up to %d; they must add up to 100", sum)
		}
	}
	for i, fo := range s.GetFailover() {
		ff := fmt.Sprintf("%s.failover[%d]", f, i)
		for _, side := range []struct{ name, v string }{{"from", fo.GetFrom()}, {"to", fo.GetTo()}} {
			switch {
			case side.v == "":
				rep.errorf(ff+"."+side.name, "%s is required: a region", side.name)
			case strings.ContainsAny(side.v, "/* \t"):
				rep.errorf(ff+"."+side.name, "%q is not a region: failover goes from region to region, without zones or \"*\"", side.v)
			}
		}
		if fo.GetFrom() != "" && fo.GetFrom() == fo.GetTo() {
			rep.errorf(ff, "from and to are both %q; failover goes to another region", fo.GetFrom())
		}
	}
}

// checkLocalityLbs checks every localityLbSetting of a DestinationRule,
// and warns where failover or failoverPriority ends up in a cluster's
// policy (resolved by subset and port, as the translation resolves it)
// without the outlier detection that would move traffic. ports are the
// service's; nil when it is not known, and then the ports the rule names
// and any other are tried.
func checkLocalityLbs(rep *reporter, dr *networking.DestinationRule, ports []uint32) {
	at := map[*networking.LocalityLoadBalancerSetting]string{}
	guess := ports == nil
	if guess {
		ports = []uint32{0} // 0: a port no portLevelSettings names
	}
	visit := func(f string, tp *networking.TrafficPolicy) {
		check := func(f string, lb *networking.LoadBalancerSettings) {
			if s := lb.GetLocalityLbSetting(); s != nil {
				at[s] = f + ".loadBalancer.localityLbSetting"
				checkLocalityLb(rep, at[s], s)
			}
		}
		check(f, tp.GetLoadBalancer())
		for i, pl := range tp.GetPortLevelSettings() {
			check(fmt.Sprintf("%s.portLevelSettings[%d]", f, i), pl.GetLoadBalancer())
			if guess {
				ports = append(ports, pl.GetPort().GetNumber())
			}
		}
	}
	visit("spec.trafficPolicy", dr.GetTrafficPolicy())
	for i, ss := range dr.GetSubsets() {
		visit(fmt.Sprintf("spec.subsets[%d].trafficPolicy", i), ss.GetTrafficPolicy())
	}
	warned := map[string]bool{}
	warn := func(f, msg string) {
		if !warned[f] {
			warned[f] = true
			rep.warnf(f, "%s", msg)
		}
	}
	for _, ss := range append([]*networking.Subset{nil}, dr.GetSubsets()...) {
		for _, port := range ports {
			p := model.ResolveTrafficPolicy(dr, ss, port)
			s := p.LoadBalancer.GetLocalityLbSetting()
			if s == nil || p.OutlierDetection != nil {
				continue
			}
			if len(s.GetFailoverPriority()) > 0 {
				warn(at[s]+".failoverPriority", "failoverPriority has no effect without outlierDetection, which tells the sidecars that endpoints are failing; add outlierDetection to this traffic policy")
			}
			if len(s.GetFailover()) > 0 && (s.GetEnabled() == nil || s.GetEnabled().GetValue()) {
				warn(at[s]+".failover", "failover has no effect without outlierDetection, which tells the sidecars that a locality's endpoints are failing; add outlierDetection to this traffic policy")
			}
		}
	}
}

var (
	labelNameRE   = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)
	labelPrefixRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$`)
)

// validLabelKey reports whether k is a Kubernetes label key: a name,
// optionally under a DNS prefix ("topology.istio.io/network").
func validLabelKey(k string) bool {
	prefix, name, ok := strings.Cut(k, "/")
	if !ok {
		return labelNameRE.MatchString(k)
	}
	return labelPrefixRE.MatchString(prefix) && labelNameRE.MatchString(name)
}

// validLabelValue reports whether v is a Kubernetes label value.
func validLabelValue(v string) bool { return v == "" || labelNameRE.MatchString(v) }
