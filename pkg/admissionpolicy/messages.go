package admissionpolicy

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/leader-election/leader-election/pkg/contract"
	"github.com/leader-election/leader-election/pkg/elector"
	"github.com/leader-election/leader-election/pkg/inject"
)

// The refusals' messages are not written twice: each is taken from pkg/inject (or pkg/elector) refusing a pod made
// to trip exactly that rule, with placeholder values that are then replaced by the CEL expressions computing them
// for the pod at hand. A changed message in Go changes the policy's message with the next `make generate`.

// template turns text into a CEL string expression, replacing each placeholder (a key of repl) by its expression.
func template(text string, repl map[string]string) string {
	keys := make([]string, 0, len(repl))
	for k := range repl {
		keys = append(keys, k)
	}
	// Longest first, so that a placeholder containing another is replaced whole.
	sort.Slice(keys, func(i, j int) bool { return len(keys[i]) > len(keys[j]) })
	parts := []string{}
	rest := text
	for rest != "" {
		at, which := len(rest), ""
		for _, k := range keys {
			if i := strings.Index(rest, k); i >= 0 && (i < at || (i == at && len(k) > len(which))) {
				at, which = i, k
			}
		}
		if at > 0 {
			parts = append(parts, celString(rest[:at]))
		}
		if which == "" {
			break
		}
		parts = append(parts, repl[which])
		rest = rest[at+len(which):]
	}
	if len(parts) == 0 {
		return "''"
	}
	return strings.Join(parts, " + ")
}

// refusal returns the message Mutate refuses pod with (in an enforcing namespace when enforced); it panics when
// Mutate admits the pod, since then the rule it was made for has changed and the generator must follow.
func refusal(pod *corev1.Pod, enforced bool) string {
	cfg := inject.DefaultConfig("v0.0.0", "placeholder/image:tag")
	_, _, err := inject.Mutate(pod, cfg, enforced)
	if err == nil {
		panic(fmt.Sprintf("pkg/inject admits the pod the generator made to be refused: %+v", pod))
	}
	return err.Error()
}

// samplePod is an annotated replica of Deployment "web", the starting point of every refused pod.
func samplePod(annotations map[string]string) *corev1.Pod {
	ann := map[string]string{contract.AnnotationEnabled: "true"}
	for k, v := range annotations {
		ann[k] = v
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Annotations: ann,
			Labels:      map[string]string{"pod-template-hash": "5d9c"},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d9c", UID: "1", Controller: ptr.To(true),
			}},
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example/app:1"}}},
	}
}

// annotationError is the CEL message of an inject.AnnotationError for key with the value expression and the
// accepted values as a CEL string expression.
func annotationError(key, value, want string) string {
	text := (&inject.AnnotationError{Key: "\x00key", Value: "\x00value", Want: "\x00want"}).Error()
	return template(text, map[string]string{"\x00key": celString(key), `"\x00value"`: quoted(value), "\x00want": want})
}

// quoted is a CEL expression quoting a string expression the way Go's %q does, for printable text and the
// characters that unicode.IsSpace reports (the ones an image annotation is refused for).
func quoted(e string) string {
	var b strings.Builder
	b.WriteString(e)
	replace := func(from, to string) { fmt.Fprintf(&b, ".replace(%s, %s)", celString(from), celString(to)) }
	replace(`\`, `\\`)
	replace(`"`, `\"`)
	for _, r := range "\t\n\v\f\r\u0085\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000" {
		q := strconv.QuoteRune(r)
		replace(string(r), q[1:len(q)-1])
	}
	return `'"' + ` + b.String() + ` + '"'`
}

// wantOf is the accepted-values part of the AnnotationError Mutate refuses pod with.
func wantOf(pod *corev1.Pod) string {
	text := refusal(pod, false)
	_, want, ok := strings.Cut(text, " is not accepted: ")
	if !ok {
		panic("not an annotation error: " + text)
	}
	return want
}

// durationMessages are CheckDurations' messages, one per rule in its order, as CEL expressions of the three
// durations' texts (variables.*Text) and of the margin (variables.timingMarginText).
func durationMessages() []string {
	const lease, renew, retry = 111 * time.Second, 77 * time.Second, 33 * time.Second
	repl := map[string]string{
		"(" + lease.String() + ")": "'(' + variables.leaseDurationText + ')'",
		"(" + renew.String() + ")": "'(' + variables.renewDeadlineText + ')'",
		"(" + retry.String() + ")": "'(' + variables.retryPeriodText + ')'",
	}
	msg := func(l, rn, rt time.Duration, extra map[string]string) string {
		err := elector.CheckDurations(l, rn, rt)
		if err == nil {
			panic("CheckDurations accepts what the generator made to be refused")
		}
		r := map[string]string{}
		for k, v := range repl {
			r[k] = v
		}
		for k, v := range extra {
			r[k] = v
		}
		return template(err.Error(), r)
	}
	return []string{
		msg(lease, renew, -retry, map[string]string{"(" + (-retry).String() + ")": "'(' + variables.retryPeriodText + ')'"}),
		msg(lease, renew, 33*time.Millisecond, map[string]string{"(33ms)": "'(' + variables.retryPeriodText + ')'"}),
		msg(lease, retry, renew, map[string]string{"(" + retry.String() + ")": "'(' + variables.renewDeadlineText + ')'", "(" + renew.String() + ")": "'(' + variables.retryPeriodText + ')'"}),
		msg(lease, 770*time.Millisecond, 330*time.Millisecond, map[string]string{"(770ms)": "'(' + variables.renewDeadlineText + ')'", "(330ms)": "'(' + variables.retryPeriodText + ')'"}),
		msg(renew, lease, retry, map[string]string{"(" + renew.String() + ")": "'(' + variables.leaseDurationText + ')'", "(" + lease.String() + ")": "'(' + variables.renewDeadlineText + ')'"}),
		msg(333*time.Second, renew, retry, map[string]string{"(" + (333 * time.Second).String() + ")": "'(' + variables.leaseDurationText + ')'"}),
		msg(lease+500*time.Millisecond, renew, retry, map[string]string{"(" + (lease + 500*time.Millisecond).String() + ")": "'(' + variables.leaseDurationText + ')'"}),
		msg(78*time.Second, renew, retry, map[string]string{"(" + (78 * time.Second).String() + ")": "'(' + variables.leaseDurationText + ')'", "margin is 1s": "'margin is ' + variables.timingMarginText"}),
	}
}
