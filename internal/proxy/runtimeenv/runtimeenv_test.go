package runtimeenv

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// helperEnv makes the test binary act as a proxy would at start: Apply,
// then print the GODEBUG it runs with.
const helperEnv = "RUNTIMEENV_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		Apply()
		fmt.Printf("GODEBUG=%q\n", os.Getenv("GODEBUG"))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestApplyReexecutes runs the test binary as a process that calls Apply:
// Apply itself changes nothing in its process's environment, so a GODEBUG
// with the setting proves that the process image was replaced.
func TestApplyReexecutes(t *testing.T) {
	for _, tc := range []struct {
		name, godebug string
		unset         bool
		want          string
	}{
		{name: "unset", unset: true, want: Setting},
		{name: "empty", godebug: "", want: Setting},
		{name: "other settings kept", godebug: "http2client=0,gctrace=0", want: "http2client=0,gctrace=0," + Setting},
		{name: "user's schedtrace kept", godebug: "schedtrace=0", want: "schedtrace=0"},
		{name: "user's schedtrace among others", godebug: "gctrace=0,schedtrace=0", want: "gctrace=0,schedtrace=0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			env := []string{helperEnv + "=1"}
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, "GODEBUG=") {
					env = append(env, kv)
				}
			}
			if !tc.unset {
				env = append(env, "GODEBUG="+tc.godebug)
			}
			cmd.Env = env
			// Standard output only: on a host up for over 24.8 days the
			// runtime prints a scheduler line to standard error.
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("helper: %v\n%s", err, out)
			}
			if got, want := strings.TrimSpace(string(out)), fmt.Sprintf("GODEBUG=%q", tc.want); got != want {
				t.Fatalf("helper printed %s, want %s", got, want)
			}
		})
	}
}

func TestWithSetting(t *testing.T) {
	for in, want := range map[string]string{
		"":                     Setting,
		"x=1":                  "x=1," + Setting,
		"schedtrace=5":         "",
		"x=1,schedtrace=0,y=2": "",
		"schedtracex=1":        "schedtracex=1," + Setting,
		" schedtrace=1":        " schedtrace=1," + Setting, // a key the runtime does not know
	} {
		got, ok := withSetting(in)
		if want == "" {
			if ok || got != in {
				t.Errorf("withSetting(%q) = %q, %v; want it kept", in, got, ok)
			}
			continue
		}
		if !ok || got != want {
			t.Errorf("withSetting(%q) = %q, %v; want %q, true", in, got, ok, want)
		}
	}
}
