// Package podpatch builds the JSON patch (RFC 6902) that turns a pod into its mutated copy, from the fields a
// mutation may change only: metadata.labels, metadata.annotations, spec.serviceAccountName, and entries appended
// to spec.volumes, spec.initContainers and spec.containers (the contract of inject.Mutate). The patch names
// nothing else, so fields this build's types do not know (a newer API server's) survive in the stored pod. A
// change to any other field is refused with an error rather than silently left out of the patch.
package podpatch

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
)

// Build returns the operations that turn before into after, or an error naming the first field after changed
// outside what a mutation may change. before is the pod as decoded from the admission request: a nil map or an
// empty list stands for a field absent from (or null in) the request, so it is added whole.
func Build(before, after *corev1.Pod) ([]jsonpatch.Operation, error) {
	if err := onlyAllowedChanges(before, after); err != nil {
		return nil, err
	}
	ops := make([]jsonpatch.Operation, 0, 8)
	ops = mapOps(ops, "/metadata/labels", before.Labels, after.Labels)
	ops = mapOps(ops, "/metadata/annotations", before.Annotations, after.Annotations)
	if b, a := before.Spec.ServiceAccountName, after.Spec.ServiceAccountName; a != b {
		if a == "" {
			ops = append(ops, jsonpatch.NewOperation("remove", "/spec/serviceAccountName", nil))
		} else {
			// add replaces a member that exists, and creates one that does not.
			ops = append(ops, jsonpatch.NewOperation("add", "/spec/serviceAccountName", a))
		}
	}
	ops = appendOps(ops, "/spec/volumes", before.Spec.Volumes, after.Spec.Volumes)
	ops = appendOps(ops, "/spec/initContainers", before.Spec.InitContainers, after.Spec.InitContainers)
	ops = appendOps(ops, "/spec/containers", before.Spec.Containers, after.Spec.Containers)
	return ops, nil
}

// onlyAllowedChanges compares after with before once the fields a mutation may change are put back as they were.
func onlyAllowedChanges(before, after *corev1.Pod) error {
	for _, l := range []struct {
		path          string
		before, after int
	}{
		{"spec.volumes", len(before.Spec.Volumes), len(after.Spec.Volumes)},
		{"spec.initContainers", len(before.Spec.InitContainers), len(after.Spec.InitContainers)},
		{"spec.containers", len(before.Spec.Containers), len(after.Spec.Containers)},
	} {
		if l.after < l.before {
			return fmt.Errorf("the mutation removed entries from %s (%d, was %d); it may only append", l.path, l.after, l.before)
		}
	}
	// A shallow copy is enough: only its top-level fields are replaced, nothing is written through them.
	rest := *after
	rest.Labels, rest.Annotations = before.Labels, before.Annotations
	rest.Spec.ServiceAccountName = before.Spec.ServiceAccountName
	rest.Spec.Volumes = prefix(before.Spec.Volumes, after.Spec.Volumes)
	rest.Spec.InitContainers = prefix(before.Spec.InitContainers, after.Spec.InitContainers)
	rest.Spec.Containers = prefix(before.Spec.Containers, after.Spec.Containers)
	// reflect.DeepEqual, not equality.Semantic: Mutate deep-copies the pod, so what it left alone is identical
	// bit for bit, and the semantic comparison costs an allocation per field it visits.
	if reflect.DeepEqual(before, &rest) {
		return nil
	}
	return fmt.Errorf("the mutation changed %s, which a patch from this webhook may not touch "+
		"(allowed: metadata.labels, metadata.annotations, spec.serviceAccountName, appending to spec.volumes, "+
		"spec.initContainers and spec.containers)", changedField(before, &rest))
}

// prefix is after's first len(before) entries, or before itself when it is empty (nil and empty differ for
// reflect.DeepEqual, and appending to nothing is allowed whichever it was).
func prefix[T any](before, after []T) []T {
	if len(before) == 0 {
		return before
	}
	return after[:len(before)]
}

// changedField names the first top-level field that differs, for the error message.
func changedField(before, rest *corev1.Pod) string {
	switch {
	case !reflect.DeepEqual(before.TypeMeta, rest.TypeMeta):
		return "apiVersion or kind"
	case !reflect.DeepEqual(before.ObjectMeta, rest.ObjectMeta):
		return "metadata (other than labels and annotations)"
	case !reflect.DeepEqual(before.Spec.Volumes, rest.Spec.Volumes):
		return "an existing entry of spec.volumes"
	case !reflect.DeepEqual(before.Spec.InitContainers, rest.Spec.InitContainers):
		return "an existing entry of spec.initContainers"
	case !reflect.DeepEqual(before.Spec.Containers, rest.Spec.Containers):
		return "an existing entry of spec.containers"
	case !reflect.DeepEqual(before.Spec, rest.Spec):
		return "spec (a field other than serviceAccountName, volumes, initContainers and containers)"
	case !reflect.DeepEqual(before.Status, rest.Status):
		return "status"
	}
	return "the pod"
}

// mapOps adds the operations that turn the string map at path from before into after: the whole map when the
// request had none, else one add, replace or remove per key, in key order so that patches are reproducible.
func mapOps(ops []jsonpatch.Operation, path string, before, after map[string]string) []jsonpatch.Operation {
	if before == nil {
		if len(after) > 0 {
			ops = append(ops, jsonpatch.NewOperation("add", path, after))
		}
		return ops
	}
	start := len(ops)
	for k, v := range after {
		old, had := before[k]
		switch {
		case !had:
			ops = append(ops, jsonpatch.NewOperation("add", keyPath(path, k), v))
		case old != v:
			ops = append(ops, jsonpatch.NewOperation("replace", keyPath(path, k), v))
		}
	}
	for k := range before {
		if _, kept := after[k]; !kept {
			ops = append(ops, jsonpatch.NewOperation("remove", keyPath(path, k), nil))
		}
	}
	if len(ops)-start > 1 {
		slices.SortFunc(ops[start:], func(a, b jsonpatch.Operation) int { return strings.Compare(a.Path, b.Path) })
	}
	return ops
}

// appendOps adds the entries after has beyond before's length: the whole list when the request had none, else
// one "add <path>/-" per entry, which appends whatever the list holds in the request.
func appendOps[T any](ops []jsonpatch.Operation, path string, before, after []T) []jsonpatch.Operation {
	added := after[len(before):]
	switch {
	case len(added) == 0:
	case len(before) == 0:
		ops = append(ops, jsonpatch.NewOperation("add", path, added))
	default:
		for i := range added {
			ops = append(ops, jsonpatch.NewOperation("add", path+"/-", &added[i]))
		}
	}
	return ops
}

// keyPath is the JSON pointer (RFC 6901) of a map key under path: in the key, "~" becomes "~0" and "/" becomes
// "~1". It is built in one allocation; most keys here carry a "/" (leader-election/...).
func keyPath(path, key string) string {
	var b strings.Builder
	b.Grow(len(path) + 1 + len(key) + strings.Count(key, "/") + strings.Count(key, "~"))
	b.WriteString(path)
	b.WriteByte('/')
	for i := 0; i < len(key); i++ {
		switch c := key[i]; c {
		case '~':
			b.WriteString("~0")
		case '/':
			b.WriteString("~1")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
