package appcheck

// notCheckedYet is the reason before the first verdict: like the kubelet's readiness, the application counts as
// unhealthy until its checks have succeeded successThreshold times in a row.
const notCheckedYet = "not checked yet"

// verdict applies the kubelet's thresholds to a series of check results: the verdict turns healthy after
// successThreshold successes in a row and unhealthy after failureThreshold failures in a row; shorter runs leave
// it as it was. It starts unhealthy, and while unhealthy its reason is the latest failure. It is a pure state machine, fed by the Checker.
type verdict struct {
	successThreshold, failureThreshold int32

	healthy bool
	reason  string
	// lastOK and run are the last result and how many results in a row were the same.
	lastOK  bool
	run     int32
	checked bool
}

func newVerdict(successThreshold, failureThreshold int32) verdict {
	return verdict{successThreshold: successThreshold, failureThreshold: failureThreshold, reason: notCheckedYet}
}

// observe records one result (failure is "" for a success, why it failed otherwise) and reports whether the
// verdict (healthy, reason) changed.
func (v *verdict) observe(failure string) (changed bool) {
	ok := failure == ""
	if v.checked && ok == v.lastOK {
		v.run++
	} else {
		v.run = 1
	}
	v.checked, v.lastOK = true, ok

	healthy, reason := v.healthy, v.reason
	switch {
	case ok && v.run >= v.successThreshold:
		healthy, reason = true, ""
	case !ok && (v.run >= v.failureThreshold || !v.healthy):
		// An unhealthy verdict says why with the latest failure ("not checked yet" is true only until then).
		healthy, reason = false, failure
	}
	changed = healthy != v.healthy || reason != v.reason
	v.healthy, v.reason = healthy, reason
	return changed
}
