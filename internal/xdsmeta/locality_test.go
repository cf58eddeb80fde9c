package xdsmeta

import "testing"

func TestLocality(t *testing.T) {
	for _, c := range []struct {
		in, canonical string
		ok            bool
	}{
		{"us-east", "us-east", true},
		{"us-east/zone-a", "us-east/zone-a", true},
		{"us-east/zone-a/rack1", "us-east/zone-a/rack1", true},
		{"us-east//rack1", "us-east//rack1", false},
		{"us-east/zone-a/rack1/x", "us-east/zone-a/rack1/x", false},
		{"us-*", "us-*", false},
		{"us east", "us east", false},
	} {
		if err := CheckLocality(c.in); (err == nil) != c.ok {
			t.Errorf("CheckLocality(%q) = %v, want ok %v", c.in, err, c.ok)
		}
		if got := FormatLocality(ParseLocality(c.in)); got != c.canonical {
			t.Errorf("FormatLocality(ParseLocality(%q)) = %q, want %q", c.in, got, c.canonical)
		}
	}
	if r, z, s := ParseLocality("eu-west"); r != "eu-west" || z != "" || s != "" {
		t.Errorf("ParseLocality(eu-west) = %q %q %q", r, z, s)
	}
	if got := FormatLocality("", "zone-a", ""); got != "/zone-a" {
		t.Errorf("FormatLocality without a region = %q, want /zone-a (the zone kept)", got)
	}
}
