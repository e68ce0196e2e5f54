package appcheck

import "testing"

// TestVerdictFollowsTheKubeletsThresholds feeds result series ("" = success) and checks the verdict and whether
// each result changed it.
func TestVerdictFollowsTheKubeletsThresholds(t *testing.T) {
	type step struct {
		failure     string
		healthy     bool
		reason      string
		wantChanged bool
	}
	for _, tc := range []struct {
		name             string
		success, failure int32
		steps            []step
	}{
		{"one success turns healthy, one failure is tolerated under threshold 3", 1, 3, []step{
			{"", true, "", true},
			{"503", true, "", false},
			{"503", true, "", false},
			{"503", false, "503", true},
			{"503", false, "503", false},
			{"", true, "", true},
		}},
		{"a run of failures is broken by one success", 1, 2, []step{
			{"", true, "", true},
			{"refused", true, "", false},
			{"", true, "", false},
			{"refused", true, "", false},
			{"refused", false, "refused", true},
		}},
		{"success threshold 2: one success is not enough", 2, 1, []step{
			{"", false, notCheckedYet, false},
			{"", true, "", true},
			{"503", false, "503", true},
			{"", false, "503", false},
			{"", true, "", true},
		}},
		{"before the first verdict, a failure says why at once", 1, 3, []step{
			{"refused", false, "refused", true},
			{"refused", false, "refused", false},
			{"timeout", false, "timeout", true},
			{"", true, "", true},
		}},
		{"while unhealthy the reason follows the latest failure", 2, 1, []step{
			{"", false, notCheckedYet, false},
			{"", true, "", true},
			{"503", false, "503", true},
			{"", false, "503", false},
			{"500", false, "500", true},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newVerdict(tc.success, tc.failure)
			if v.healthy || v.reason != notCheckedYet {
				t.Fatalf("initial verdict %v %q, want unhealthy %q", v.healthy, v.reason, notCheckedYet)
			}
			for i, s := range tc.steps {
				changed := v.observe(s.failure)
				if v.healthy != s.healthy || v.reason != s.reason || changed != s.wantChanged {
					t.Fatalf("step %d (%q): healthy %v reason %q changed %v, want %v %q %v", i, s.failure, v.healthy, v.reason, changed, s.healthy, s.reason, s.wantChanged)
				}
			}
		})
	}
}
