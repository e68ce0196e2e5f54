// Package admissionpolicy generates the admission policies of admission mode "policy": MutatingAdmissionPolicies
// that inject the elector inside the API server as pkg/inject does in the webhook, and ValidatingAdmissionPolicies
// that refuse what pkg/inject refuses. Everything they build and every message they give is taken from pkg/inject
// (its Facts, built by the same code as the webhook's elector, and its refusals of pods made to trip each rule), so
// the two modes cannot drift apart unnoticed: hack/policygen writes the chart's and config/'s copies, and a test
// fails when they differ from what this package generates.
package admissionpolicy

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"

	"github.com/leader-election/leader-election/pkg/contract"
	"github.com/leader-election/leader-election/pkg/elector"
	"github.com/leader-election/leader-election/pkg/inject"
)

// Names of the objects as config/injection-policies installs them; the chart replaces the NamePrefix by its full name.
const (
	NamePrefix = "leader-election"
	// InjectPolicy injects opted-in pods; InjectEnforcedPolicy the replicas of an enforcing namespace.
	InjectPolicy         = NamePrefix + "-inject"
	InjectEnforcedPolicy = NamePrefix + "-inject-enforced"
	// ValidatePolicy and ValidateEnforcedPolicy refuse what pkg/inject refuses, for the same pods.
	ValidatePolicy         = NamePrefix + "-injection"
	ValidateEnforcedPolicy = NamePrefix + "-injection-enforced"
	// ParamsName is the ConfigMap holding the injection's defaults (see Params).
	ParamsName = NamePrefix + "-injection"
	// GuardPolicy and GuardEnforcedPolicy take no parameters, so they judge pods even while the parameter ConfigMap
	// is missing: they refuse a pod the injection marked refused (RefusedAnnotation) and one it should have injected
	// but did not.
	GuardPolicy         = NamePrefix + "-injection-guard"
	GuardEnforcedPolicy = NamePrefix + "-injection-guard-enforced"
)

// RefusedAnnotation is where a MutatingAdmissionPolicy writes the refusal pkg/inject would give a pod (several
// joined by ErrorSeparator), instead of injecting it; the guard policies refuse the pod with exactly that text. A
// pod's author who writes it only gets their own pod refused.
const RefusedAnnotation = "leader-election/refused"

// Placeholders for the parameter ConfigMap's name and namespace in the guard's message; Files replaces them with
// the install's (Helm template actions in the chart).
const (
	paramsNamePlaceholder      = "PARAMSCONFIGMAPNAME"
	paramsNamespacePlaceholder = "PARAMSNAMESPACE"
)

// Keys of the parameter ConfigMap: the defaults of inject.Config.
const (
	ParamVersion       = "version"
	ParamImage         = "image"
	ParamSidecar       = "sidecar"
	ParamLeaseDuration = "leaseDuration"
	ParamRenewDeadline = "renewDeadline"
	ParamRetryPeriod   = "retryPeriod"
	ParamPort          = "port"
	ParamTraffic       = "traffic"
	ParamCPURequest    = "cpuRequest"
	ParamCPULimit      = "cpuLimit"
	ParamMemoryRequest = "memoryRequest"
	ParamMemoryLimit   = "memoryLimit"
)

// ErrorSeparator separates several refusals in one message. pkg/inject separates them with line breaks, which
// the API server does not allow in a ValidatingAdmissionPolicy's message.
const ErrorSeparator = "; "

// InjectedSuffix follows the version in leader-election/injected where a policy injected the pod: CEL has no
// hash function to write the webhook's settings hash with. The webhook recognises it (contract.PolicyInjectedSuffix).
const InjectedSuffix = contract.PolicyInjectedSuffix

// Params is the parameter ConfigMap's data for a webhook configuration: the same defaults in both modes.
func Params(cfg inject.Config) map[string]string {
	return map[string]string{
		ParamVersion:       cfg.Version,
		ParamImage:         cfg.Image,
		ParamSidecar:       string(cfg.Sidecar),
		ParamLeaseDuration: cfg.LeaseDuration.String(),
		ParamRenewDeadline: cfg.RenewDeadline.String(),
		ParamRetryPeriod:   cfg.RetryPeriod.String(),
		ParamPort:          strconv.Itoa(int(cfg.Port)),
		ParamTraffic:       cfg.Traffic,
		ParamCPURequest:    cfg.CPURequest.String(),
		ParamCPULimit:      cfg.CPULimit.String(),
		ParamMemoryRequest: cfg.MemoryRequest.String(),
		ParamMemoryLimit:   cfg.MemoryLimit.String(),
	}
}

// Policies returns the two MutatingAdmissionPolicies and the four ValidatingAdmissionPolicies (the opt-in and the
// enforcing validation, then the opt-in and the enforcing guard), without bindings (their selectors and parameter
// reference depend on the install).
func Policies() ([]*admissionregistrationv1.MutatingAdmissionPolicy, []*admissionregistrationv1.ValidatingAdmissionPolicy, error) {
	var maps []*admissionregistrationv1.MutatingAdmissionPolicy
	var vaps []*admissionregistrationv1.ValidatingAdmissionPolicy
	for _, enforced := range []bool{false, true} {
		vars, err := variables(enforced)
		if err != nil {
			return nil, nil, err
		}
		patch, err := injection()
		if err != nil {
			return nil, nil, err
		}
		mapName, vapName, cond := InjectPolicy, ValidatePolicy, optInCondition
		if enforced {
			mapName, vapName, cond = InjectEnforcedPolicy, ValidateEnforcedPolicy, enforceCondition
		}
		maps = append(maps, &admissionregistrationv1.MutatingAdmissionPolicy{
			TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingAdmissionPolicy"},
			ObjectMeta: metav1.ObjectMeta{Name: mapName},
			Spec: admissionregistrationv1.MutatingAdmissionPolicySpec{
				ParamKind:          &admissionregistrationv1.ParamKind{APIVersion: "v1", Kind: "ConfigMap"},
				MatchConstraints:   podCreate(),
				MatchConditions:    []admissionregistrationv1.MatchCondition{cond},
				Variables:          vars,
				FailurePolicy:      ptr.To(admissionregistrationv1.Fail),
				ReinvocationPolicy: admissionregistrationv1.IfNeededReinvocationPolicy,
				Mutations: []admissionregistrationv1.Mutation{{
					PatchType: admissionregistrationv1.PatchTypeJSONPatch,
					JSONPatch: &admissionregistrationv1.JSONPatch{Expression: patch},
				}},
			},
		})
		vaps = append(vaps, &admissionregistrationv1.ValidatingAdmissionPolicy{
			TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicy"},
			ObjectMeta: metav1.ObjectMeta{Name: vapName},
			Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
				ParamKind:        &admissionregistrationv1.ParamKind{APIVersion: "v1", Kind: "ConfigMap"},
				MatchConstraints: podCreate(),
				MatchConditions:  []admissionregistrationv1.MatchCondition{cond},
				Variables:        vars,
				FailurePolicy:    ptr.To(admissionregistrationv1.Fail),
				Validations: []admissionregistrationv1.Validation{{
					// A pod marked refused, or one without the elector it should have, is the guard's to refuse (one
					// policy per denial, so the message a user sees does not depend on the order of evaluation);
					// this one refuses what changed after the injection last saw the pod.
					Expression:        "!variables.judged || variables.refused || (variables.expectsElector && !variables.hasElector) || size(variables.errors) == 0",
					MessageExpression: "variables.errors.join(" + celString(ErrorSeparator) + ")",
					Reason:            ptr.To(metav1.StatusReasonInvalid),
				}},
			},
		})
	}
	vaps = append(vaps, guard(false), guard(true))
	return maps, vaps, nil
}

// guard returns the ValidatingAdmissionPolicy without parameters of the opt-in or the enforcing variant. Its
// bindings keep working while the parameter ConfigMap is missing (the other bindings then skip every pod,
// parameterNotFoundAction Allow), so no pod that needs an elector is admitted without one, and no other pod is
// refused.
func guard(enforced bool) *admissionregistrationv1.ValidatingAdmissionPolicy {
	name, cond := GuardPolicy, optInCondition
	if enforced {
		name, cond = GuardEnforcedPolicy, enforceCondition
	}
	vars := []admissionregistrationv1.Variable{}
	for _, v := range takingPart(enforced) {
		vars = append(vars, admissionregistrationv1.Variable{Name: v.Name, Expression: helmSafe(v.Expression)})
	}
	return &admissionregistrationv1.ValidatingAdmissionPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			MatchConstraints: podCreate(),
			MatchConditions:  []admissionregistrationv1.MatchCondition{cond},
			Variables:        vars,
			FailurePolicy:    ptr.To(admissionregistrationv1.Fail),
			Validations: []admissionregistrationv1.Validation{{
				Expression:        "!variables.judged || !variables.refused",
				MessageExpression: "string(variables.ann[" + celString(RefusedAnnotation) + "])",
				// When the annotation's text is no message the API server takes (empty, a line break, over 5 kB).
				Message: "refused by the leader-election injection: see the pod's annotation " + RefusedAnnotation,
				Reason:  ptr.To(metav1.StatusReasonInvalid),
			}, {
				Expression: "!variables.expectsElector || variables.hasElector || variables.refused",
				Message:    MissingParamsMessage(paramsNamePlaceholder, paramsNamespacePlaceholder),
				Reason:     ptr.To(metav1.StatusReasonInvalid),
			}},
		},
	}
}

// MissingParamsMessage is the guard's refusal of a pod that needs an elector and has none: the injection did not
// run, because its parameter ConfigMap name in namespace is missing.
func MissingParamsMessage(name, namespace string) string {
	return fmt.Sprintf("this pod needs the leader-election elector (annotated %s, or a replica in a namespace labelled %s=true) and was not injected: "+
		"the injection's parameter ConfigMap %s in namespace %s is missing; restore it (helm upgrade the release with its values, "+
		"or kubectl apply --server-side -k config/default-policy), then create the pod again",
		contract.AnnotationEnabled, contract.LabelEnforce, name, namespace)
}

// takingPart returns the variables, without parameters, that say whether a policy variant judges a pod and whether
// the pod must leave admission with an elector. A replica of an enforcing namespace that is annotated
// leader-election/enabled other than "false" is judged by the opt-in variant alone, whose bindings select every
// namespace the enforcing ones do: each pod has one policy to refuse it, one message.
func takingPart(enforced bool) []admissionregistrationv1.Variable {
	f := inject.Facts()
	q := celString
	has := q(contract.AnnotationEnabled) + " in variables.ann"
	vars := []admissionregistrationv1.Variable{
		{Name: "ann", Expression: "has(object.metadata.annotations) ? object.metadata.annotations : {}"},
		{Name: "labels", Expression: "has(object.metadata.labels) ? object.metadata.labels : {}"},
		{Name: "inits", Expression: "has(object.spec.initContainers) ? object.spec.initContainers : []"},
		{Name: "refs", Expression: "has(object.metadata.ownerReferences) ? object.metadata.ownerReferences : []"},
		{Name: "controllers", Expression: "variables.refs.filter(r, has(r.controller) && r.controller)"},
		{Name: "enforced", Expression: strconv.FormatBool(enforced)},
		{Name: "enabled", Expression: fmt.Sprintf("%s ? variables.ann[%s] : ''", has, q(contract.AnnotationEnabled))},
		{Name: "enforcedReplica", Expression: fmt.Sprintf("variables.enforced && size(variables.controllers) > 0 && "+
			"((variables.controllers[0].kind == 'ReplicaSet' && %[1]s in variables.labels && variables.labels[%[1]s] != '') || variables.controllers[0].kind == 'StatefulSet')",
			q(f.DeploymentHashLabels[0]))},
		{Name: "judged", Expression: fmt.Sprintf("!variables.enforced || !(%s) || variables.enabled == 'false'", has)},
		// Opted in (a value other than "false", which is refused as a bad value), or enrolled by the namespace
		// (opting out there is refused).
		{Name: "expectsElector", Expression: "variables.judged && (variables.enforced ? variables.enforcedReplica : variables.enabled != 'false')"},
		{Name: "hasElector", Expression: fmt.Sprintf("variables.inits.exists(c, c.name == %[1]s) || object.spec.containers.exists(c, c.name == %[1]s)", q(contract.ContainerName))},
		{Name: "refused", Expression: q(RefusedAnnotation) + " in variables.ann"},
	}
	return vars
}

func podCreate() *admissionregistrationv1.MatchResources {
	return &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
		RuleWithOperations: admissionregistrationv1.RuleWithOperations{
			Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
			Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}, Scope: ptr.To(admissionregistrationv1.NamespacedScope)},
		},
	}}}
}

// The match conditions are the webhook's (config/webhook/manifests.yaml): pods that name the opt-in annotation,
// and in enforcing namespaces the replicas of a ReplicaSet or StatefulSet.
var (
	optInCondition = admissionregistrationv1.MatchCondition{
		Name:       "annotated",
		Expression: fmt.Sprintf("has(object.metadata.annotations) && %s in object.metadata.annotations", celString(contract.AnnotationEnabled)),
	}
	enforceCondition = admissionregistrationv1.MatchCondition{
		Name:       "workload-replica",
		Expression: "has(object.metadata.ownerReferences) && object.metadata.ownerReferences.exists(r, has(r.controller) && r.controller && (r.kind == 'ReplicaSet' || r.kind == 'StatefulSet'))",
	}
)

// maxVolumeSuffix bounds the "-<n>" suffixes tried for a volume name the pod already uses (CEL has no loops).
const maxVolumeSuffix = 64

// variables computes, in CEL, what Mutate computes in Go: whether the pod takes part, its settings, the names of
// the volumes to add, and the one refusal Mutate would give (variables.errors, empty or one message).
func variables(enforced bool) ([]admissionregistrationv1.Variable, error) {
	f := inject.Facts()
	var vars []admissionregistrationv1.Variable
	add := func(name, expr string) {
		vars = append(vars, admissionregistrationv1.Variable{Name: name, Expression: helmSafe(expr)})
	}
	q := celString
	ann := func(key string) string { return "variables.ann[" + q(key) + "]" }
	has := func(key string) string { return q(key) + " in variables.ann" }
	param := func(key string) string { return "params.data[" + q(key) + "]" }
	E := q(contract.ContainerName)

	// Who takes part, whether the pod is this variant's to judge, and whether it has an elector: the guard's view.
	for _, v := range takingPart(enforced) {
		add(v.Name, v.Expression)
	}
	add("volumes", "has(object.spec.volumes) ? object.spec.volumes : []")
	add("owners", "variables.controllers + variables.refs")
	add("ownerKind", "size(variables.owners) > 0 ? variables.owners[0].kind : ''")
	add("ownerName", "size(variables.owners) > 0 ? variables.owners[0].name : ''")

	// takesPart, as inject.takesPart and ownedByWorkload.
	add("enabledValid", fmt.Sprintf("!(%s) || variables.enabled in ['true', 'false']", has(contract.AnnotationEnabled)))
	add("takesPart", "variables.enabledValid && (variables.enforcedReplica ? variables.enabled != 'false' : variables.enabled == 'true')")
	add("wayOut", fmt.Sprintf("variables.enabled == 'true' ? %s : %s", q(wayOut(false)), q(wayOut(true))))

	// The elector already there: a reinvocation, or a look-alike.
	add("electors", fmt.Sprintf("variables.inits.filter(c, c.name == %[1]s) + object.spec.containers.filter(c, c.name == %[1]s)", E))
	add("electorIsInit", fmt.Sprintf("variables.inits.exists(c, c.name == %s)", E))

	// Lease name (leaseNameFromOwner).
	hashes := make([]string, len(f.DeploymentHashLabels))
	for i, l := range f.DeploymentHashLabels {
		hashes[i] = q(l)
	}
	add("hashLabels", fmt.Sprintf("%s.filter(l, l in variables.labels && variables.labels[l] != '' && "+
		"variables.ownerName.endsWith('-' + variables.labels[l]) && size(variables.ownerName) > size(variables.labels[l]) + 1)", celList(hashes)))
	add("leaseName", fmt.Sprintf("%s ? %s : (variables.ownerKind == 'ReplicaSet' && size(variables.hashLabels) > 0 ? "+
		"variables.ownerName.substring(0, size(variables.ownerName) - size(variables.labels[variables.hashLabels[0]]) - 1) : variables.ownerName)",
		has(contract.AnnotationLeaseName), ann(contract.AnnotationLeaseName)))
	tooLong := validation.IsDNS1123Subdomain(strings.Repeat("a", validation.DNS1123SubdomainMaxLength+1))
	badChars := validation.IsDNS1123Subdomain("-")
	leaseWant := strings.TrimSuffix(wantOf(samplePod(map[string]string{contract.AnnotationLeaseName: "-"})), badChars[0])
	add("leaseNameErrors", fmt.Sprintf("%[1]s ? "+
		"(size(%[2]s) <= %[3]d && %[2]s.matches(%[4]s) ? [] : [%[5]s]) : "+
		"(variables.ownerKind == '' ? [%[6]s] : variables.ownerKind == 'Job' ? [%[7]s] : [])",
		has(contract.AnnotationLeaseName), ann(contract.AnnotationLeaseName), validation.DNS1123SubdomainMaxLength,
		q("^"+dns1123Subdomain+"$"),
		annotationError(contract.AnnotationLeaseName, ann(contract.AnnotationLeaseName), q(leaseWant)+" + "+
			fmt.Sprintf("((size(%[1]s) > %[2]d ? [%[3]s] : []) + (%[1]s.matches(%[4]s) ? [] : [%[5]s])).join('; ')",
				ann(contract.AnnotationLeaseName), validation.DNS1123SubdomainMaxLength, q(tooLong[0]), q("^"+dns1123Subdomain+"$"), q(badChars[0]))),
		q(refusal(withoutOwner(samplePod(nil)), false)),
		template(refusal(ownedByJob(samplePod(nil), "placeholder-job"), false), map[string]string{`"placeholder-job"`: quoted("variables.ownerName")}),
	))

	// Durations: the annotation when it is a positive Go duration, else the default; then CheckDurations.
	durationWant := wantOf(samplePod(map[string]string{contract.AnnotationLeaseDuration: "x"}))
	var durationErrors []string
	for _, d := range []struct{ name, key, param string }{
		{"leaseDuration", contract.AnnotationLeaseDuration, ParamLeaseDuration},
		{"renewDeadline", contract.AnnotationRenewDeadline, ParamRenewDeadline},
		{"retryPeriod", contract.AnnotationRetryPeriod, ParamRetryPeriod},
	} {
		add(d.name+"Valid", fmt.Sprintf("!(%[1]s) || (%[2]s.matches(%[3]s) && duration(%[2]s) > duration('0s'))", has(d.key), ann(d.key), q(goDuration)))
		source := fmt.Sprintf("(%s && variables.%sValid ? %s : %s)", has(d.key), d.name, ann(d.key), param(d.param))
		add(d.name, "duration("+source+")")
		add(d.name+"Ms", "variables."+d.name+".getMilliseconds()")
		// Printed as Go prints it, or as written where it is finer than a millisecond (CEL gives no nanoseconds).
		add(d.name+"Text", fmt.Sprintf("variables.%[1]s == duration(string(variables.%[1]sMs) + 'ms') ? (%[2]s) : %[3]s", d.name, goDurationText("variables."+d.name+"Ms"), source))
		durationErrors = append(durationErrors, fmt.Sprintf("(variables.%sValid ? [] : [%s])", d.name, annotationError(d.key, ann(d.key), q(durationWant))))
	}
	add("timingMarginText", goDurationText("(variables.leaseDurationMs - variables.renewDeadlineMs)"))
	lit := func(d time.Duration) string { return "duration('" + d.String() + "')" }
	rules := []string{
		"variables.retryPeriod <= duration('0s')",
		"variables.retryPeriod < " + lit(elector.MinRetryPeriod),
		"variables.renewDeadline <= variables.retryPeriod",
		"variables.renewDeadline < " + lit(elector.MinRenewDeadline),
		"variables.leaseDuration <= variables.renewDeadline",
		fmt.Sprintf("variables.leaseDuration < %s || variables.leaseDuration > %s", lit(elector.MinLeaseDuration), lit(elector.MaxLeaseDuration)),
		"variables.leaseDuration != duration(string(variables.leaseDuration.getSeconds()) + 's')",
		"variables.leaseDuration - variables.renewDeadline < " + lit(elector.ProbeDetectionTime),
	}
	timingPrefix, timingSuffix := timingFrame()
	messages := durationMessages()
	chain := "''"
	for i := len(rules) - 1; i >= 0; i-- {
		chain = fmt.Sprintf("%s ? %s : %s", rules[i], messages[i], chain)
	}
	add("timingError", chain)
	durationErrors = append(durationErrors, fmt.Sprintf("(variables.leaseDurationValid && variables.renewDeadlineValid && variables.retryPeriodValid && variables.timingError != '' ? [%s + variables.timingError + %s] : [])",
		q(timingPrefix), q(timingSuffix)))
	add("durationErrors", strings.Join(durationErrors, " + "))

	// Port, traffic, image.
	add("portValid", fmt.Sprintf("!(%[1]s) || (%[2]s.matches('^[+-]?[0-9]{1,10}$') && int(%[2]s) >= 1 && int(%[2]s) <= 65535)", has(contract.AnnotationPort), ann(contract.AnnotationPort)))
	add("port", fmt.Sprintf("%s && variables.portValid ? int(%s) : int(%s)", has(contract.AnnotationPort), ann(contract.AnnotationPort), param(ParamPort)))
	add("trafficValid", fmt.Sprintf("!(%s) || %s in [%s, %s]", has(contract.AnnotationTraffic), ann(contract.AnnotationTraffic), q(contract.TrafficLabel), q(contract.TrafficReadiness)))
	add("traffic", fmt.Sprintf("%s && variables.trafficValid ? %s : %s", has(contract.AnnotationTraffic), ann(contract.AnnotationTraffic), param(ParamTraffic)))
	add("imageValid", fmt.Sprintf("!(%[1]s) || (%[2]s != '' && !%[2]s.matches(%[3]s))", has(contract.AnnotationImage), ann(contract.AnnotationImage), q(unicodeSpace)))
	add("image", fmt.Sprintf("%s && variables.imageValid ? %s : %s", has(contract.AnnotationImage), ann(contract.AnnotationImage), param(ParamImage)))
	add("valueErrors", strings.Join([]string{
		fmt.Sprintf("(variables.portValid ? [] : [%s])", annotationError(contract.AnnotationPort, ann(contract.AnnotationPort), q(wantOf(samplePod(map[string]string{contract.AnnotationPort: "x"}))))),
		fmt.Sprintf("(variables.trafficValid ? [] : [%s])", annotationError(contract.AnnotationTraffic, ann(contract.AnnotationTraffic), q(wantOf(samplePod(map[string]string{contract.AnnotationTraffic: "x"}))))),
		fmt.Sprintf("(variables.imageValid ? [] : [%s])", annotationError(contract.AnnotationImage, ann(contract.AnnotationImage), q(wantOf(samplePod(map[string]string{contract.AnnotationImage: ""}))))),
	}, " + "))

	// Resources (resolveResources): annotations over defaults; none by default under pod-level resources; a
	// Guaranteed pod's elector requests its limits.
	add("podLevel", "has(object.spec.resources) && ((has(object.spec.resources.requests) && size(object.spec.resources.requests) > 0) || "+
		"(has(object.spec.resources.limits) && size(object.spec.resources.limits) > 0))")
	guaranteedC := "['cpu', 'memory'].all(r, has(c.resources) && has(c.resources.limits) && r in c.resources.limits && quantity(c.resources.limits[r]).compareTo(quantity('0')) != 0 && " +
		"(!has(c.resources.requests) || !(r in c.resources.requests) || quantity(c.resources.requests[r]).compareTo(quantity(c.resources.limits[r])) == 0))"
	add("guaranteed", fmt.Sprintf("!variables.podLevel && size(object.spec.containers) > 0 && object.spec.containers.all(c, %[1]s) && variables.inits.all(c, %[1]s)", guaranteedC))
	positiveWant := wantOf(samplePod(map[string]string{contract.AnnotationCPURequest: "x"}))
	bytesWant := wantOf(samplePod(map[string]string{contract.AnnotationMemoryRequest: "100m"}))
	var quantityErrors []string
	for _, r := range []struct {
		name, key, param string
		bytes            bool
	}{
		{"cpuRequest", contract.AnnotationCPURequest, ParamCPURequest, false},
		{"cpuLimit", contract.AnnotationCPULimit, ParamCPULimit, false},
		{"memoryRequest", contract.AnnotationMemoryRequest, ParamMemoryRequest, true},
		{"memoryLimit", contract.AnnotationMemoryLimit, ParamMemoryLimit, true},
	} {
		add(r.name+"Positive", fmt.Sprintf("!(%[1]s) || (isQuantity(%[2]s) && quantity(%[2]s).compareTo(quantity('0')) > 0)", has(r.key), ann(r.key)))
		whole := "true"
		if r.bytes {
			// isInteger is false for some whole numbers of bytes (1.5Gi); the float is exact for any size an
			// elector is given.
			whole = fmt.Sprintf("!(%[1]s) || !variables.%[2]sPositive || quantity(%[3]s).isInteger() || "+
				"double(int(quantity(%[3]s).asApproximateFloat())) == quantity(%[3]s).asApproximateFloat()", has(r.key), r.name, ann(r.key))
		}
		add(r.name+"Whole", whole)
		add(r.name+"Set", fmt.Sprintf("%s ? %s : (variables.podLevel ? '' : %s)", has(r.key), ann(r.key), param(r.param)))
		quantityErrors = append(quantityErrors, fmt.Sprintf("(!variables.%[1]sPositive ? [%[2]s] : !variables.%[1]sWhole ? [%[3]s] : [])", r.name,
			annotationError(r.key, ann(r.key), q(positiveWant)), annotationError(r.key, ann(r.key), q(bytesWant))))
	}
	add("quantityErrors", strings.Join(quantityErrors, " + "))
	var pairErrors []string
	defaults := inject.DefaultConfig("", "")
	for _, p := range []struct{ what, name, requestKey, limitKey, small, defaultLimit string }{
		{"CPU", "cpu", contract.AnnotationCPURequest, contract.AnnotationCPULimit, "7m", defaults.CPULimit.String()},
		{"memory", "memory", contract.AnnotationMemoryRequest, contract.AnnotationMemoryLimit, "7Mi", defaults.MemoryLimit.String()},
	} {
		req, lim := "variables."+p.name+"RequestSet", "variables."+p.name+"LimitSet"
		add(p.name+"Request", fmt.Sprintf("variables.guaranteed && !(%s) ? %s : %s", has(p.requestKey), lim, req))
		below := template(refusal(samplePod(map[string]string{p.requestKey: "7", p.limitKey: "5"}), false), map[string]string{
			" 5 ": "' ' + " + lim + " + ' '", " 7;": "' ' + " + req + " + ';'",
		})
		guaranteedPod := samplePod(map[string]string{p.requestKey: p.small})
		guaranteedPod.Spec.Containers[0].Resources.Limits = corev1.ResourceList{"cpu": mustQ("1"), "memory": mustQ("1Gi")}
		notEqual := template(refusal(guaranteedPod, false), map[string]string{
			`"` + p.small + `"`: quoted(req), " " + p.defaultLimit + " to keep": "' ' + " + lim + " + ' to keep'",
		})
		pairErrors = append(pairErrors, fmt.Sprintf("(variables.guaranteed && !(%[1]s) ? [] : "+
			"%[2]s != '' && %[3]s != '' && quantity(%[2]s).compareTo(quantity(%[3]s)) < 0 ? [%[4]s] : "+
			"variables.guaranteed && (%[3]s == '' || %[2]s == '' || quantity(%[3]s).compareTo(quantity(%[2]s)) != 0) ? [%[5]s] : [])",
			has(p.requestKey), lim, req, below, notEqual))
		// A pod-level limit caps the elector's (fitPodBudget); the sum of the requests is left to the API server.
		aboveWant := template(wantOf(podLevelPod(p.limitKey, "9", p.name, "8")), map[string]string{" 8": "' ' + string(object.spec.resources.limits['" + p.name + "'])"})
		pairErrors = append(pairErrors, fmt.Sprintf("(variables.podLevel && has(object.spec.resources.limits) && '%[1]s' in object.spec.resources.limits && %[2]s != '' && "+
			"quantity(%[2]s).compareTo(quantity(object.spec.resources.limits['%[1]s'])) > 0 ? [%[3]s] : [])",
			p.name, lim, annotationError(p.limitKey, ann(p.limitKey), aboveWant)))
	}
	add("resourceErrors", "size(variables.quantityErrors) > 0 ? variables.quantityErrors : "+strings.Join(pairErrors, " + "))
	add("requests", "variables.cpuRequest != '' && variables.memoryRequest != '' ? {'cpu': variables.cpuRequest, 'memory': variables.memoryRequest} : "+
		"variables.cpuRequest != '' ? {'cpu': variables.cpuRequest} : variables.memoryRequest != '' ? {'memory': variables.memoryRequest} : {}")
	add("limits", "variables.cpuLimitSet != '' && variables.memoryLimitSet != '' ? {'cpu': variables.cpuLimitSet, 'memory': variables.memoryLimitSet} : "+
		"variables.cpuLimitSet != '' ? {'cpu': variables.cpuLimitSet} : variables.memoryLimitSet != '' ? {'memory': variables.memoryLimitSet} : {}")

	// Mesh (resolveMesh).
	add("proxies", fmt.Sprintf("object.spec.containers.filter(c, c.name == %s)", q(f.IstioProxyContainer)))
	add("meshValid", fmt.Sprintf("!(%s) || %s in [%s, %s]", has(contract.AnnotationMesh), ann(contract.AnnotationMesh), q(contract.MeshIstio), q(contract.MeshNone)))
	add("mesh", fmt.Sprintf("%s ? %s : (size(variables.proxies) > 0 ? %s : %s)", has(contract.AnnotationMesh), ann(contract.AnnotationMesh), q(contract.MeshIstio), q(contract.MeshNone)))
	add("user", fmt.Sprintf("variables.mesh != %s ? %d : (size(variables.proxies) > 0 && has(variables.proxies[0].securityContext) && "+
		"has(variables.proxies[0].securityContext.runAsUser) && variables.proxies[0].securityContext.runAsUser > 0 ? variables.proxies[0].securityContext.runAsUser : %d)",
		q(contract.MeshIstio), f.NonRootUID, f.IstioProxyUser))
	add("meshErrors", fmt.Sprintf("variables.meshValid ? [] : [%s]", annotationError(contract.AnnotationMesh, ann(contract.AnnotationMesh), q(wantOf(samplePod(map[string]string{contract.AnnotationMesh: "x"}))))))

	// Health gate (resolveHealth, keptHealth) and handover (resolveHandover).
	healthVariables(add, f)
	add("handoverValid", fmt.Sprintf("!(%[1]s) || %[2]s in ['true', 'false']", has(contract.AnnotationHandover), ann(contract.AnnotationHandover)))
	add("handover", fmt.Sprintf("!(%s) || %s != 'false'", has(contract.AnnotationHandover), ann(contract.AnnotationHandover)))
	add("handoverErrors", fmt.Sprintf("variables.handoverValid ? [] : [%s]",
		annotationError(contract.AnnotationHandover, ann(contract.AnnotationHandover), q(wantOf(samplePod(map[string]string{contract.AnnotationHandover: "x"}))))))

	add("settingsErrors", "variables.leaseNameErrors + variables.durationErrors + variables.valueErrors + variables.resourceErrors + variables.meshErrors + "+
		"variables.healthErrors + variables.handoverErrors")

	// Unsupported pods (refuseUnsupported), with the way out Mutate gives.
	wayRepl := map[string]string{wayOut(false): "variables.wayOut"}
	windowsOS := samplePod(nil)
	windowsOS.Spec.OS = &corev1.PodOS{Name: corev1.Windows}
	windowsSelector := samplePod(nil)
	windowsSelector.Spec.NodeSelector = map[string]string{corev1.LabelOSStable: string(corev1.Windows)}
	hostNetwork := samplePod(nil)
	hostNetwork.Spec.HostNetwork = true
	add("unsupported", fmt.Sprintf("has(object.spec.os) && object.spec.os.name == 'windows' ? [%s] : "+
		"has(object.spec.nodeSelector) && %[4]s in object.spec.nodeSelector && object.spec.nodeSelector[%[4]s] == 'windows' ? [%[2]s] : "+
		"has(object.spec.hostNetwork) && object.spec.hostNetwork ? [%[3]s] : []",
		template(refusal(windowsOS, false), wayRepl), template(refusal(windowsSelector, false), wayRepl), template(refusal(hostNetwork, false), wayRepl),
		q(corev1.LabelOSStable)))

	// Names: the ServiceAccount token volume the pod has (existingTokenVolume), and free names for what is added.
	add("tokenVolumes", fmt.Sprintf("variables.volumes.filter(v, has(v.projected) && has(v.projected.sources) && "+
		"v.projected.sources.exists(s, has(s.serviceAccountToken) && (!has(s.serviceAccountToken.audience) || s.serviceAccountToken.audience == ''))).map(v, v.name)"))
	mounting := fmt.Sprintf("c.name != %[1]s && has(c.volumeMounts) && c.volumeMounts.exists(m, m.mountPath == %[2]s && m.name in variables.tokenVolumes)", E, q(f.TokenMountPath))
	firstMount := fmt.Sprintf("c.volumeMounts.filter(m, m.mountPath == %s && m.name in variables.tokenVolumes)[0].name", q(f.TokenMountPath))
	add("existingToken", fmt.Sprintf("object.spec.containers.filter(c, %[1]s).map(c, %[2]s) + variables.inits.filter(c, %[1]s).map(c, %[2]s)", mounting, firstMount))
	add("volumeNames", "variables.volumes.map(v, v.name)")
	free := func(base, taken string) string {
		suffixes := make([]string, 0, maxVolumeSuffix-1)
		for i := 2; i <= maxVolumeSuffix; i++ {
			suffixes = append(suffixes, strconv.Itoa(i))
		}
		return fmt.Sprintf("!(%[1]s in %[2]s) ? %[1]s : [%[3]s].map(i, %[1]s + '-' + string(i)).filter(n, !(n in %[2]s))[0]", q(base), taken, strings.Join(suffixes, ", "))
	}
	add("newTokenVolume", fmt.Sprintf("size(variables.existingToken) > 0 ? '' : (%s)", free(f.TokenVolume.Name, "variables.volumeNames")))
	add("tokenVolume", "size(variables.existingToken) > 0 ? variables.existingToken[0] : variables.newTokenVolume")
	add("podInfoVolume", free(f.PodInfoVolume.Name, "(variables.volumeNames + (variables.newTokenVolume == '' ? [] : [variables.newTokenVolume]))"))

	// Collisions (fitInjected) with the pod's own containers.
	portNamed := fmt.Sprintf("c.name != %s && has(c.ports) && c.ports.exists(p, has(p.name) && p.name == %s)", E, q(f.PortName))
	portTaken := fmt.Sprintf("c.name != %s && has(c.ports) && c.ports.exists(p, p.containerPort == variables.port && (has(p.protocol) ? p.protocol : 'TCP') == 'TCP')", E)
	add("portNameOwners", fmt.Sprintf("variables.inits.filter(c, %[1]s).map(c, c.name) + object.spec.containers.filter(c, %[1]s).map(c, c.name)", portNamed))
	add("portOwners", fmt.Sprintf("variables.inits.filter(c, %[1]s).map(c, c.name) + object.spec.containers.filter(c, %[1]s).map(c, c.name)", portTaken))
	namePod := samplePod(nil)
	namePod.Spec.Containers[0].Name = "placeholder-owner"
	namePod.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: f.PortName, ContainerPort: 1}}
	portPod := samplePod(map[string]string{contract.AnnotationPort: "54321"})
	portPod.Spec.Containers[0].Name = "placeholder-owner"
	portPod.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 54321}}
	add("collisions", fmt.Sprintf("size(variables.portNameOwners) > 0 ? [%s] : size(variables.portOwners) > 0 ? [%s] : []",
		template(refusal(namePod, false), map[string]string{`"placeholder-owner"`: quoted("variables.portNameOwners[0]")}),
		template(refusal(portPod, false), map[string]string{`"placeholder-owner"`: quoted("variables.portOwners[0]"), "54321": "string(variables.port)"})))

	// Recognition of an elector already there (recognise).
	rec, err := recognition(f)
	if err != nil {
		return nil, err
	}
	for _, v := range rec {
		add(v.Name, v.Expression)
	}
	reserved := samplePod(nil)
	reserved.Spec.Containers = append(reserved.Spec.Containers, corev1.Container{Name: contract.ContainerName, Image: "x"})
	add("errors", fmt.Sprintf("!variables.enabledValid ? [%s] : "+
		"variables.enforcedReplica && variables.enabled == 'false' ? [%s] : "+
		"!variables.takesPart ? [] : "+
		"size(variables.unsupported) > 0 ? variables.unsupported : "+
		"variables.hasElector ? (%s in variables.ann && %s != '' ? variables.recognitionErrors : [%s]) : "+
		"size(variables.settingsErrors) > 0 ? [variables.settingsErrors.join(%s)] : variables.collisions",
		annotationError(contract.AnnotationEnabled, ann(contract.AnnotationEnabled), q(wantOf(samplePod(map[string]string{contract.AnnotationEnabled: "x"})))),
		q(refusal(optedOut(), true)),
		q(contract.AnnotationInjected), ann(contract.AnnotationInjected), q(refusal(reserved, false)), q(ErrorSeparator)))
	return vars, nil
}

// recognition returns the variables that compare an elector found in the pod with what the injection would build
// (recognise): recognitionErrors is empty or Mutate's refusal of a look-alike.
func recognition(f inject.PolicyFacts) ([]admissionregistrationv1.Variable, error) {
	var vars []admissionregistrationv1.Variable
	add := func(name, expr string) {
		vars = append(vars, admissionregistrationv1.Variable{Name: name, Expression: expr})
	}
	b := electorBuilder()
	want := toJSON(f.Elector).(map[string]any)
	alt := toJSON(f.ElectorReadiness).(map[string]any)
	containerType := reflect.TypeOf(corev1.Container{})
	fields := jsonFields(containerType)
	// The fields recognise names, in its order; resources are not compared (a later webhook, the VPA, resizes).
	order := []string{"image", "command", "args", "env", "ports", "securityContext", "volumeMounts", "readinessProbe", "livenessProbe",
		"restartPolicy", "imagePullPolicy", "terminationMessagePath", "terminationMessagePolicy"}
	skip := map[string]bool{"volumeMounts.name": true}
	wantRegular := toJSON(f.ElectorRegular).(map[string]any)
	altRegular := toJSON(f.ElectorRegularReadiness).(map[string]any)
	// field is the condition that the elector's field name is what the injection builds, in either sidecar mode.
	field := func(name string) (string, error) {
		cond := func(want, alt map[string]any) (string, error) {
			if name == "env" {
				c, err := envMatches(b, f, "variables.elector.env", skip)
				return "has(variables.elector.env) && " + c, err
			}
			v, ok := want[name]
			if !ok {
				return "!has(variables.elector." + name + ")", nil
			}
			c, err := b.matches("variables.elector."+name, v, alt[name], fields[name], name, skip)
			if err != nil {
				return "", err
			}
			return "has(variables.elector." + name + ") && " + c, nil
		}
		native, err := cond(want, alt)
		if err != nil {
			return "", err
		}
		regular, err := cond(wantRegular, altRegular)
		if err != nil || native == regular {
			return native, err
		}
		return fmt.Sprintf("(params.data[%s] == %s ? (%s) : (%s))", celString(ParamSidecar), celString(string(inject.SidecarNative)), native, regular), nil
	}
	var entries []string
	named := map[string]bool{}
	for _, name := range order {
		named[name] = true
		cond, err := field(name)
		if err != nil {
			return nil, err
		}
		entries = append(entries, fmt.Sprintf("%s: %s", celString(name), cond))
	}
	var others []string
	for _, name := range sortedKeys(fields) {
		if named[name] || name == "resources" || name == "name" {
			continue
		}
		cond, err := field(name)
		if err != nil {
			return nil, err
		}
		others = append(others, cond)
	}
	add("elector", "variables.electors[0]")
	add("electorFields", "{"+strings.Join(entries, ", ")+"}")
	quotedOrder := make([]string, len(order))
	for i, n := range order {
		quotedOrder[i] = celString(n)
	}
	add("differing", fmt.Sprintf("%s.filter(f, !variables.electorFields[f])", celList(quotedOrder)))
	add("othersDiffer", "!("+strings.Join(others, " && ")+")")

	// The volumes the elector mounts: a token volume another container mounts too, or one as Mutate adds it; the
	// labels volume as Mutate adds it.
	mountOf := func(path string) string {
		return fmt.Sprintf("(has(variables.elector.volumeMounts) ? variables.elector.volumeMounts.filter(m, m.mountPath == %s).map(m, m.name) : [])", celString(path))
	}
	add("electorTokenMount", mountOf(f.TokenMountPath))
	add("electorPodInfoMount", mountOf(f.PodInfoMountPath))
	add("electorTokenVolume", "size(variables.electorTokenMount) == 0 ? [] : variables.volumes.filter(v, v.name == variables.electorTokenMount[0])")
	add("electorPodInfoVolume", "size(variables.electorPodInfoMount) == 0 ? [] : variables.volumes.filter(v, v.name == variables.electorPodInfoMount[0])")
	volSkip := map[string]bool{"name": true}
	tokenOK, err := b.matches("variables.electorTokenVolume[0]", toJSON(f.TokenVolume), toJSON(f.TokenVolume), reflect.TypeOf(corev1.Volume{}), "", volSkip)
	if err != nil {
		return nil, err
	}
	podInfoOK, err := b.matches("variables.electorPodInfoVolume[0]", toJSON(f.PodInfoVolume), toJSON(f.PodInfoVolume), reflect.TypeOf(corev1.Volume{}), "", volSkip)
	if err != nil {
		return nil, err
	}
	add("volumeDiffers", fmt.Sprintf("size(variables.electorTokenMount) == 0 || size(variables.electorPodInfoMount) == 0 ? '' : "+
		"!(variables.electorTokenMount[0] in variables.existingToken || (size(variables.electorTokenVolume) > 0 && %s)) ? variables.electorTokenMount[0] : "+
		"!(size(variables.electorPodInfoVolume) > 0 && %s) ? variables.electorPodInfoMount[0] : ''", tokenOK, podInfoOK))

	// The refusal, built from recognise's own message for a look-alike whose image differs.
	fake := samplePod(nil)
	injected, _, err := inject.Mutate(fake, inject.DefaultConfig("v0.0.0", "placeholder/image:tag"), false)
	if err != nil {
		return nil, err
	}
	for i := range injected.Spec.InitContainers {
		if injected.Spec.InitContainers[i].Name == contract.ContainerName {
			injected.Spec.InitContainers[i].Image = "placeholder/other:tag"
		}
	}
	injected.Annotations[contract.AnnotationInjected] = "placeholder-injected"
	text := refusal(injected, false)
	refuse := func(why string) string {
		return template(text, map[string]string{`"placeholder-injected"`: quoted("variables.ann['" + contract.AnnotationInjected + "']"), "its image differ": why})
	}
	native := celString(string(inject.SidecarNative))
	add("recognitionErrors", fmt.Sprintf("size(variables.settingsErrors) > 0 ? [%s] : "+
		"size(variables.collisions) > 0 ? [%s] : "+
		"variables.electorIsInit != (params.data[%s] == %s) ? [%s] : "+
		"size(variables.differing) > 0 ? [%s] : variables.othersDiffer ? [%s] : "+
		"variables.volumeDiffers != '' ? [%s] : "+
		"!(%s in variables.labels && variables.labels[%s] == 'true') ? [%s] : []",
		refuse("variables.settingsErrors.join("+celString(ErrorSeparator)+")"), refuse("variables.collisions[0]"),
		celString(ParamSidecar), native, refuse("'the container is in the wrong list for sidecar mode ' + params.data['"+ParamSidecar+"']"),
		refuse("'its ' + variables.differing.join(', ') + ' differ'"), refuse("'its other fields differ'"),
		refuse(`'volume "' + variables.volumeDiffers + '" differs'`),
		celString(contract.LabelMember), celString(contract.LabelMember), refuse(celString("label "+contract.LabelMember+" is missing"))))
	return vars, nil
}

// electorBuilder replaces every placeholder of inject.Placeholders() in the built elector by its CEL variable.
func electorBuilder() *builder {
	p := inject.Placeholders()
	return newBuilder(map[any]string{
		p.LeaseName:                       "variables.leaseName",
		p.Image:                           "variables.image",
		inject.PlaceholderTokenVolume:     "variables.tokenVolume",
		p.LeaseDuration.String():          "variables.leaseDurationText",
		p.RenewDeadline.String():          "variables.renewDeadlineText",
		p.RetryPeriod.String():            "variables.retryPeriodText",
		strconv.Itoa(int(p.Port)):         "string(variables.port)",
		float64(p.Port):                   "variables.port",
		float64(p.ProxyUser):              "variables.user",
		inject.Facts().PodInfoVolume.Name: "variables.podInfoVolume",
		p.AppCheck:                        "variables.appCheck",
		strconv.FormatBool(p.Handover):    "string(variables.handover)",
	}, map[string]string{
		"resources": "Object.spec.initContainers.resources{requests: variables.requests, limits: variables.limits}",
	})
}

// injection is the JSON patch expression of the mutation: the elector, its volumes, the ServiceAccount name, the
// label and the annotations, as inject.inject adds them; or, for an elector already there, only the removal of a
// copied role label; nothing where Mutate would refuse (the ValidatingAdmissionPolicy then refuses with its message).
func injection() (string, error) {
	f := inject.Facts()
	b := electorBuilder()
	// The env depends on the health gate and the mesh (envList), so it is built apart for each list's type.
	env, err := envList(b, f, "Object.spec.initContainers.env")
	if err != nil {
		return "", err
	}
	b.whole["env"] = env
	container, err := b.construct(toJSON(f.Elector), toJSON(f.ElectorReadiness), "Object.spec.initContainers", "")
	if err != nil {
		return "", err
	}
	delete(b.whole, "env")
	if b.whole["env"], err = envList(b, f, "Object.spec.containers.env"); err != nil {
		return "", err
	}
	b.whole["resources"] = "Object.spec.containers.resources{requests: variables.requests, limits: variables.limits}"
	regular, err := b.construct(toJSON(f.ElectorRegular), toJSON(f.ElectorRegularReadiness), "Object.spec.containers", "")
	if err != nil {
		return "", err
	}
	for v := range b.subst {
		if !b.used[v] && v != inject.Facts().PodInfoVolume.Name {
			return "", fmt.Errorf("placeholder %v is not in the elector pkg/inject builds: the generator must follow pkg/inject", v)
		}
	}
	vb := newBuilder(map[any]string{f.TokenVolume.Name: "variables.newTokenVolume", f.PodInfoVolume.Name: "variables.podInfoVolume"}, nil)
	tokenVol, err := vb.construct(toJSON(f.TokenVolume), toJSON(f.TokenVolume), "Object.spec.volumes", "")
	if err != nil {
		return "", err
	}
	podInfoVol, err := vb.construct(toJSON(f.PodInfoVolume), toJSON(f.PodInfoVolume), "Object.spec.volumes", "")
	if err != nil {
		return "", err
	}
	esc := func(key string) string { return "jsonpatch.escapeKey(" + celString(key) + ")" }
	native := celString(string(inject.SidecarNative))
	list := func(field, value string) string {
		return fmt.Sprintf("(has(object.spec.%[1]s) ? %[2]s.map(x, JSONPatch{op: 'add', path: '/spec/%[1]s/-', value: x}) : [JSONPatch{op: 'add', path: '/spec/%[1]s', value: %[2]s}])", field, value)
	}
	volumes := fmt.Sprintf("((variables.newTokenVolume == '' ? [] : [%s]) + [%s])", tokenVol, podInfoVol)
	annotations := fmt.Sprintf("{%s: string(variables.leaseName), %s: string(variables.mesh), %s: string(variables.healthGate), %s: string(params.data[%s]) + '/%s'}",
		celString(contract.AnnotationLeaseName), celString(contract.AnnotationMesh), celString(contract.AnnotationHealthGate), celString(contract.AnnotationInjected), celString(ParamVersion), InjectedSuffix)
	roleRemoval := fmt.Sprintf("(%[1]s in variables.labels ? [JSONPatch{op: 'remove', path: '/metadata/labels/' + %[2]s}] : [])", celString(contract.LabelRole), esc(contract.LabelRole))
	// A refused pod is not injected; it is marked with the refusal, for the guard (which needs no parameters) to give.
	refused := fmt.Sprintf("variables.errors.join(%s)", celString(ErrorSeparator))
	mark := fmt.Sprintf("(has(object.metadata.annotations) ? [JSONPatch{op: 'add', path: '/metadata/annotations/' + %[1]s, value: %[2]s}] : [JSONPatch{op: 'add', path: '/metadata/annotations', value: {%[3]s: %[2]s}}])",
		esc(RefusedAnnotation), refused, celString(RefusedAnnotation))
	expr := fmt.Sprintf(`size(variables.errors) > 0 ? `+mark+` :
!variables.takesPart ? [] :
variables.hasElector ? %[1]s :
(has(object.spec.serviceAccountName) && object.spec.serviceAccountName != '' ? [] : [JSONPatch{op: 'add', path: '/spec/serviceAccountName', value: 'default'}]) +
%[2]s +
(params.data[%[3]s] == %[4]s ? %[5]s : %[6]s) +
(has(object.metadata.labels) ? [JSONPatch{op: 'add', path: '/metadata/labels/' + %[7]s, value: 'true'}] + %[1]s : [JSONPatch{op: 'add', path: '/metadata/labels', value: {%[8]s: 'true'}}]) +
(has(object.metadata.annotations) ? %[9]s.map(k, JSONPatch{op: 'add', path: '/metadata/annotations/' + jsonpatch.escapeKey(k), value: %[9]s[k]}) : [JSONPatch{op: 'add', path: '/metadata/annotations', value: %[9]s}])`,
		roleRemoval, list("volumes", volumes), celString(ParamSidecar), native,
		list("initContainers", "["+container+"]"), list("containers", "["+regular+"]"),
		esc(contract.LabelMember), celString(contract.LabelMember), annotations)
	return helmSafe(expr), nil
}

// helmSafe separates CEL's adjacent braces, which Helm would read as template actions in the chart's copy.
func helmSafe(expr string) string {
	for strings.Contains(expr, "{{") || strings.Contains(expr, "}}") {
		expr = strings.ReplaceAll(strings.ReplaceAll(expr, "{{", "{ {"), "}}", "} }")
	}
	return expr
}

// dns1123Subdomain is validation.IsDNS1123Subdomain's pattern.
const dns1123Subdomain = `[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*`

// goDuration matches what time.ParseDuration accepts, less signs and a bare "0" (which are never positive).
const goDuration = `^\+?(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+$`

// unicodeSpace matches a character unicode.IsSpace reports: the ASCII spaces, NEL and Unicode's Z categories.
const unicodeSpace = `[\t\n\v\f\r\x{85}\p{Z}]`

// goDurationText is a CEL expression printing a duration of ms milliseconds as Go's time.Duration.String does.
func goDurationText(ms string) string {
	frac := fmt.Sprintf("(%[1]s %% 1000 == 0 ? '' : '.' + (%[1]s %% 100 == 0 ? string(%[1]s %% 1000 / 100) : "+
		"%[1]s %% 10 == 0 ? (%[1]s %% 1000 < 100 ? '0' : '') + string(%[1]s %% 1000 / 10) : "+
		"(%[1]s %% 1000 < 10 ? '00' : %[1]s %% 1000 < 100 ? '0' : '') + string(%[1]s %% 1000)))", ms)
	return fmt.Sprintf("%[1]s < 1000 ? string(%[1]s) + 'ms' : (%[1]s >= 3600000 ? string(%[1]s / 3600000) + 'h' : '') + "+
		"(%[1]s >= 60000 ? string(%[1]s / 60000 %% 60) + 'm' : '') + string(%[1]s / 1000 %% 60) + %[2]s + 's'", ms, frac)
}

// wayOut is what Mutate tells a pod that cannot take part to change, read from its refusal of a host-network pod.
func wayOut(enforced bool) string {
	pod := samplePod(nil)
	if enforced {
		delete(pod.Annotations, contract.AnnotationEnabled)
	}
	pod.Spec.HostNetwork = true
	text := refusal(pod, enforced)
	i := strings.LastIndex(text, "(")
	return strings.TrimSuffix(text[i+1:], ")")
}

// timingFrame is the text settingsFor puts around CheckDurations' message.
func timingFrame() (prefix, suffix string) {
	text := refusal(samplePod(map[string]string{contract.AnnotationRetryPeriod: "33ms"}), false)
	inner := elector.CheckDurations(15*time.Second, 10*time.Second, 33*time.Millisecond).Error()
	prefix, suffix, ok := strings.Cut(text, inner)
	if !ok {
		panic("settingsFor no longer wraps CheckDurations' message: " + text)
	}
	return prefix, suffix
}

func withoutOwner(pod *corev1.Pod) *corev1.Pod {
	pod.OwnerReferences = nil
	return pod
}

func ownedByJob(pod *corev1.Pod, name string) *corev1.Pod {
	pod.OwnerReferences = []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: name, UID: "1", Controller: ptr.To(true)}}
	return pod
}

func mustQ(s string) resource.Quantity { return resource.MustParse(s) }

func optedOut() *corev1.Pod {
	pod := samplePod(map[string]string{contract.AnnotationEnabled: "false"})
	return pod
}

// podLevelPod has a pod-level limit of podLimit for resource and the elector's limit annotated as limit.
func podLevelPod(key, limit, resourceName, podLimit string) *corev1.Pod {
	pod := samplePod(map[string]string{key: limit})
	pod.Spec.Resources = &corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceName(resourceName): mustQ(podLimit)}}
	return pod
}
