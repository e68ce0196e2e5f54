package e2e

import (
	"strings"
	"testing"

	"k8s.io/client-go/kubernetes"

	"github.com/leader-election/leader-election/test/cluster"
)

// sampler is the suite's EndpointSlice watch: it fails the suite if two ready endpoints ever appear for one Service.
type sampler struct{ *cluster.Endpoints }

func startSampler(t *testing.T, cs kubernetes.Interface, ns string) *sampler {
	e, err := cluster.WatchEndpoints(t.Context(), cs, ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	return &sampler{e}
}

func (s *sampler) report(t *testing.T) {
	events, violations := s.Summary()
	t.Logf("EndpointSlice sampler: %d watch events, %d with two or more ready endpoints for one Service", events, len(violations))
	if len(violations) > 0 {
		t.Errorf("two ready endpoints for one Service:\n%s", strings.Join(violations, "\n"))
	}
}
