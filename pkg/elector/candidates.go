package elector

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
)

// Candidate Leases. Every replica advertises itself to the leader in a coordination.k8s.io/v1 Lease of its own,
// in the shape of KEP-4355's LeaseCandidate (coordination.k8s.io/v1beta1, not served by default, so not used):
//
//	name                                 <lease>-<pod name>                 (LeaseCandidate: the candidate's name)
//	label leader-election/candidate-for  <lease>                            (LeaseCandidate spec.leaseName)
//	spec.holderIdentity                  <pod name>
//	annotation leader-election/holder-uid <pod UID>
//	annotation leader-election/candidate-healthy  "true" | "false"          the application's verdict
//	annotation leader-election/candidate-revision <pod-template-hash>       (LeaseCandidate spec.binaryVersion)
//	annotation leader-election/candidate-started  RFC 3339 time              when this elector started
//	spec.renewTime                       when it was last written           (LeaseCandidate spec.renewTime)
//	ownerReferences                      [the pod, by name and UID]         the garbage collector removes it with the pod
//
// A replica writes it when it starts and when its health changes (at most once per retry period), never
// periodically: standbys make no periodic requests. Only the leader reads candidates: one watch with a label
// selector while it leads, so that choosing a successor at handover time needs no request.
const (
	// CandidateForLabel names the Lease a candidate Lease advertises for.
	CandidateForLabel = "leader-election/candidate-for"
	// CandidateHealthyAnnotation is "true" when the candidate's application is healthy (or not health-gated).
	CandidateHealthyAnnotation = "leader-election/candidate-healthy"
	// CandidateRevisionAnnotation is the candidate pod's template revision (pod-template-hash or
	// controller-revision-hash), "" when unknown.
	CandidateRevisionAnnotation = "leader-election/candidate-revision"
	// CandidateStartedAnnotation is when the candidate's elector started (RFC 3339).
	CandidateStartedAnnotation = "leader-election/candidate-started"
)

// revisionLabels are the pod labels that name a pod's template revision: a Deployment's ReplicaSet and a
// StatefulSet's or DaemonSet's ControllerRevision.
var revisionLabels = []string{"pod-template-hash", "controller-revision-hash"}

// CandidateLeaseName is the name of the candidate Lease of pod podName for the Lease leaseName.
func CandidateLeaseName(leaseName, podName string) string {
	return leaseName + "-" + podName
}

// candidate is one replica as its candidate Lease advertises it.
type candidate struct {
	Name     string
	UID      string
	Healthy  bool
	Revision string
	Started  time.Time
}

// candidatesUsable reports why this replica cannot advertise itself ("" when it can): the candidate Lease's name
// and label must be valid.
func candidatesUsable(cfg Config) string {
	if msgs := validation.IsDNS1123Subdomain(CandidateLeaseName(cfg.LeaseName, cfg.Identity)); len(msgs) > 0 {
		return fmt.Sprintf("candidate Lease name %q is not valid: %s", CandidateLeaseName(cfg.LeaseName, cfg.Identity), strings.Join(msgs, "; "))
	}
	if msgs := validation.IsValidLabelValue(cfg.LeaseName); len(msgs) > 0 {
		return fmt.Sprintf("lease name %q cannot be a label value (%s)", cfg.LeaseName, strings.Join(msgs, "; "))
	}
	return ""
}

// candidateLease builds this replica's candidate Lease.
func candidateLease(cfg Config, me candidate, now time.Time) *coordinationv1.Lease {
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{
			Name:      CandidateLeaseName(cfg.LeaseName, cfg.Identity),
			Namespace: cfg.Namespace,
			Labels:    map[string]string{CandidateForLabel: cfg.LeaseName},
			Annotations: map[string]string{
				HolderUIDAnnotation:         cfg.UID,
				CandidateHealthyAnnotation:  strconv.FormatBool(me.Healthy),
				CandidateRevisionAnnotation: me.Revision,
				CandidateStartedAnnotation:  me.Started.UTC().Format(time.RFC3339Nano),
			},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: cfg.Identity, UID: types.UID(cfg.UID)}},
		},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity: ptr.To(cfg.Identity),
			// The policy requires every elector-written Lease to carry a bounded duration; nobody waits on it.
			LeaseDurationSeconds: ptr.To(cfg.leaseDurationSeconds()),
			RenewTime:            ptr.To(metav1.NewMicroTime(now)),
		},
	}
}

// candidateOf reads a candidate Lease; false when it is not one for cfg's Lease.
func candidateOf(l *coordinationv1.Lease, cfg Config) (candidate, bool) {
	if l == nil || l.Labels[CandidateForLabel] != cfg.LeaseName || holderOf(l) == "" || holderUIDOf(l) == "" {
		return candidate{}, false
	}
	started, _ := time.Parse(time.RFC3339Nano, l.Annotations[CandidateStartedAnnotation])
	return candidate{
		Name:     holderOf(l),
		UID:      holderUIDOf(l),
		Healthy:  l.Annotations[CandidateHealthyAnnotation] == "true",
		Revision: l.Annotations[CandidateRevisionAnnotation],
		Started:  started,
	}, true
}

// chooseSuccessor picks the replica a leader hands the Lease to, from the candidates it knows: healthy ones
// only, never the leader itself (by name or UID); among them the newest pod-template revision first, then the
// rest; within a rank the most recently started, then the smallest name, so that every leader with the same
// knowledge picks the same.
//
// The newest revision is the one whose first pod (the leader counted) started last. That is the revision of the
// most recently started candidate, except that a pod of an older revision whose elector restarted does not make
// its revision new again: in a rollout the new pods' revision wins, whichever revision the leader runs.
func chooseSuccessor(candidates []candidate, self candidate) (candidate, bool) {
	firstStarted := map[string]time.Time{}
	note := func(c candidate) {
		if c.Revision == "" {
			return
		}
		if t, ok := firstStarted[c.Revision]; !ok || c.Started.Before(t) {
			firstStarted[c.Revision] = c.Started
		}
	}
	note(self)
	for _, c := range candidates {
		if c.Name != self.Name && c.UID != self.UID {
			note(c)
		}
	}
	newest, newestAt := "", time.Time{}
	for rev, at := range firstStarted {
		if newest == "" || at.After(newestAt) || at.Equal(newestAt) && rev < newest {
			newest, newestAt = rev, at
		}
	}
	rank := func(c candidate) int {
		if c.Revision != "" && c.Revision == newest {
			return 0
		}
		return 1
	}
	var best candidate
	found := false
	for _, c := range candidates {
		if !c.Healthy || c.Name == self.Name || c.UID == self.UID || c.UID == "" {
			continue
		}
		if !found || rank(c) < rank(best) || rank(c) == rank(best) && startedBefore(best, c) {
			best, found = c, true
		}
	}
	return best, found
}

// startedBefore orders candidates by start time, then by name (the later name first, so that the smallest name
// wins a tie in chooseSuccessor).
func startedBefore(a, b candidate) bool {
	if !a.Started.Equal(b.Started) {
		return a.Started.Before(b.Started)
	}
	return a.Name > b.Name
}

// revisionOf is the pod's template revision from its labels file ("" when unknown).
func revisionOf(labelsFile string) string {
	if labelsFile == "" {
		return ""
	}
	data, err := os.ReadFile(labelsFile)
	if err != nil {
		return ""
	}
	podLabels := parseLabels(data)
	for _, key := range revisionLabels {
		if v := podLabels[key]; v != "" {
			return v
		}
	}
	return ""
}

// CandidateAPI is what the elector does with candidate Leases: write its own, and (as leader) watch all of them.
type CandidateAPI interface {
	// Create creates a candidate Lease.
	Create(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error)
	// Update writes a candidate Lease if its resourceVersion is still current.
	Update(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error)
	// Get reads one candidate Lease by name.
	Get(ctx context.Context, name string) (*coordinationv1.Lease, error)
	// Watch follows every candidate Lease of the election from a resource version ("" starts with an ADDED event
	// for each existing one).
	Watch(ctx context.Context, resourceVersion string) (watch.Interface, error)
}

// NewCandidateAPI returns the client for the candidate Leases of one election.
func NewCandidateAPI(cfg *rest.Config, namespace, leaseName string) (CandidateAPI, error) {
	client, httpClient, err := newLeaseClient(cfg)
	if err != nil {
		return nil, err
	}
	return restCandidates{client: client, namespace: namespace, leaseName: leaseName, closeIdle: closeIdleOf(httpClient)}, nil
}

// restCandidates is CandidateAPI over a REST client.
type restCandidates struct {
	client    rest.Interface
	namespace string
	leaseName string
	// closeIdle closes the idle connections of the transport, which client-go shares between clients of the same
	// configuration. A candidate write is rare (a start, a change of health): the connection it leaves idle
	// would sit in the pool that the election's own requests draw from, where a network fault can kill it
	// silently and make the next election request (a read on shutdown, say) wait out its timeout on it.
	closeIdle func()
}

func (r restCandidates) Create(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	defer r.closeIdle()
	out := &coordinationv1.Lease{}
	err := r.client.Post().MaxRetries(0).Namespace(r.namespace).Resource("leases").Body(l).Do(ctx).Into(out)
	return out, err
}

func (r restCandidates) Update(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	if l.Name == r.leaseName {
		return nil, fmt.Errorf("lease %q is the elected Lease, not a candidate", l.Name)
	}
	defer r.closeIdle()
	out := &coordinationv1.Lease{}
	err := r.client.Put().MaxRetries(0).Namespace(r.namespace).Resource("leases").Name(l.Name).Body(l).Do(ctx).Into(out)
	return out, err
}

func (r restCandidates) Get(ctx context.Context, name string) (*coordinationv1.Lease, error) {
	defer r.closeIdle()
	out := &coordinationv1.Lease{}
	err := r.client.Get().MaxRetries(0).Namespace(r.namespace).Resource("leases").Name(name).Do(ctx).Into(out)
	return out, err
}

func (r restCandidates) Watch(ctx context.Context, resourceVersion string) (watch.Interface, error) {
	// A watch without a name needs the collection's watch permission (which the elector's role has, without
	// resourceNames), but no list: a watch from "" begins with an ADDED event for every existing candidate.
	req := r.client.Get().MaxRetries(0).Namespace(r.namespace).Resource("leases").
		Param("watch", "true").
		Param("allowWatchBookmarks", "true").
		Param("labelSelector", labels.SelectorFromSet(labels.Set{CandidateForLabel: r.leaseName}).String())
	if resourceVersion != "" {
		req = req.Param("resourceVersion", resourceVersion)
	}
	return req.Watch(ctx)
}
