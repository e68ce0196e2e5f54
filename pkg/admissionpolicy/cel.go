package admissionpolicy

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// celString quotes s as a CEL string literal.
func celString(s string) string {
	var b strings.Builder
	b.WriteByte('\'')
	for _, r := range s {
		switch {
		case r == '\\' || r == '\'':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r >= 0x20 && r < 0x7f:
			b.WriteRune(r)
		case r <= 0xffff:
			fmt.Fprintf(&b, "\\u%04x", r)
		default:
			fmt.Fprintf(&b, "\\U%08x", r)
		}
	}
	b.WriteByte('\'')
	return b.String()
}

// celList joins expressions into a CEL list.
func celList(items []string) string { return "[" + strings.Join(items, ", ") + "]" }

// toJSON decodes the JSON form of v into maps, lists and scalars: the shape the API server sees.
func toJSON(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		panic(err)
	}
	return out
}

// builder turns objects that pkg/inject built from its Placeholders into CEL: every placeholder value becomes the
// expression that computes it for the pod at hand, everything else a literal. Objects become typed constructions
// (Object.spec.initContainers{...}), which the API server's type checker requires of a JSON patch's values.
type builder struct {
	// subst maps a placeholder value (string, or float64 for numbers, as JSON decodes them) to its expression.
	subst map[any]string
	// whole maps a field path (JSON names joined by dots, no list indexes) to an expression for the whole value.
	whole map[string]string
	// used records the placeholders found.
	used map[any]bool
}

func newBuilder(subst map[any]string, whole map[string]string) *builder {
	return &builder{subst: subst, whole: whole, used: map[any]bool{}}
}

// construct returns the CEL construction of v (JSON-decoded) of CEL type typePath, at field path path; alt is the
// same value built for traffic mode "readiness" (or v itself).
func (b *builder) construct(v, alt any, typePath, path string) (string, error) {
	if e, ok := b.whole[path]; ok {
		return e, nil
	}
	switch v := v.(type) {
	case map[string]any:
		altMap, _ := alt.(map[string]any)
		if len(altMap) != len(v) {
			return "", fmt.Errorf("%s: the object differs in shape between traffic modes", path)
		}
		keys := sortedKeys(v)
		fields := make([]string, 0, len(keys))
		for _, k := range keys {
			e, err := b.construct(v[k], altMap[k], typePath+"."+k, join(path, k))
			if err != nil {
				return "", err
			}
			fields = append(fields, k+": "+e)
		}
		return typePath + "{" + strings.Join(fields, ", ") + "}", nil
	case []any:
		altList, _ := alt.([]any)
		if len(altList) != len(v) {
			return "", fmt.Errorf("%s: the list differs in length between traffic modes", path)
		}
		items := make([]string, len(v))
		for i := range v {
			e, err := b.construct(v[i], altList[i], typePath, path)
			if err != nil {
				return "", err
			}
			items[i] = e
		}
		return celList(items), nil
	default:
		if !reflect.DeepEqual(v, alt) {
			a, err := b.scalar(v, path)
			if err != nil {
				return "", err
			}
			r, err := b.scalar(alt, path)
			if err != nil {
				return "", err
			}
			return "(variables.traffic == 'readiness' ? " + r + " : " + a + ")", nil
		}
		return b.scalar(v, path)
	}
}

// scalar is a leaf: its placeholder's expression, or its literal.
func (b *builder) scalar(v any, path string) (string, error) {
	if e, ok := b.subst[v]; ok {
		b.used[v] = true
		return e, nil
	}
	switch v := v.(type) {
	case string:
		for p := range b.subst {
			if s, ok := p.(string); ok && strings.Contains(v, s) {
				return "", fmt.Errorf("%s: %q holds placeholder %q inside a longer string; teach the generator to build it", path, v, s)
			}
		}
		return celString(v), nil
	case float64:
		if v != float64(int64(v)) {
			return "", fmt.Errorf("%s: %v is not an integer", path, v)
		}
		return strconv.FormatInt(int64(v), 10), nil
	case bool:
		return strconv.FormatBool(v), nil
	}
	return "", fmt.Errorf("%s: unexpected %T", path, v)
}

// matches returns a CEL condition that holds when got (an expression for a typed value of Go type t) equals v
// (JSON-decoded), field by field: every field v sets is there and equal, every other field of t is absent, and
// lists have v's length. Fields at a path in skip are only required to be present.
func (b *builder) matches(got string, v, alt any, t reflect.Type, path string, skip map[string]bool) (string, error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if skip[path] {
		return "true", nil
	}
	switch v := v.(type) {
	case map[string]any:
		altMap, _ := alt.(map[string]any)
		var conds []string
		fields := jsonFields(t)
		for _, name := range sortedKeys(fields) {
			val, set := v[name]
			if !set {
				conds = append(conds, "!has("+got+"."+name+")")
				continue
			}
			sub := got + "." + name
			c, err := b.matches(sub, val, altMap[name], fields[name], join(path, name), skip)
			if err != nil {
				return "", err
			}
			conds = append(conds, "has("+sub+") && "+c)
		}
		for name := range v {
			if _, ok := fields[name]; !ok {
				return "", fmt.Errorf("%s: field %q is not in %s", path, name, t)
			}
		}
		return "(" + strings.Join(conds, " && ") + ")", nil
	case []any:
		altList, _ := alt.([]any)
		if len(altList) != len(v) {
			return "", fmt.Errorf("%s: the list differs in length between traffic modes", path)
		}
		conds := []string{fmt.Sprintf("size(%s) == %d", got, len(v))}
		for i, item := range v {
			c, err := b.matches(fmt.Sprintf("%s[%d]", got, i), item, altList[i], t.Elem(), path, skip)
			if err != nil {
				return "", err
			}
			conds = append(conds, c)
		}
		return "(" + strings.Join(conds, " && ") + ")", nil
	default:
		e, err := b.construct(v, alt, "", path)
		if err != nil {
			return "", err
		}
		if d, ok := durationOfText[e]; ok {
			// The webhook prints a duration finer than a millisecond as Go does (250.5ms) where the policies
			// write it as annotated (250500us): a pod the webhook injected (while helm upgrade switches modes, or
			// created again in this mode) holds the same duration, spelled another way.
			return fmt.Sprintf("(%s == %s || (%s.matches(%s) && duration(%s) == %s))", got, e, got, celString(comparableDuration), got, d), nil
		}
		return got + " == " + e, nil
	}
}

// comparableDuration is the spelling of an election timing the policies compare by duration: a Go duration of at
// most ten parts, each too short to overflow (at most 5 digits before the point in hours, 6 in minutes, 8 in
// seconds, 11 in milliseconds, 14 in microseconds, 17 in nanoseconds), so that no sum overflows either. CEL's
// duration() fails on an overflow, and the pod would be refused with an evaluation error instead of recognise's
// refusal (recognise, in Go, refuses what time.ParseDuration cannot parse). Every spelling Go prints, and every
// annotation the policies accept without leading zeros, fits.
const comparableDuration = `^\+?(([0-9]{1,5}(\.[0-9]*)?|\.[0-9]+)h|([0-9]{1,6}(\.[0-9]*)?|\.[0-9]+)m|([0-9]{1,8}(\.[0-9]*)?|\.[0-9]+)s|` +
	`([0-9]{1,11}(\.[0-9]*)?|\.[0-9]+)ms|([0-9]{1,14}(\.[0-9]*)?|\.[0-9]+)(us|µs|μs)|([0-9]{1,17}(\.[0-9]*)?|\.[0-9]+)ns){1,10}$`

// durationOfText maps the expressions of the election timings as the elector's env holds them to the durations
// they print: the env is compared by duration, not spelling.
var durationOfText = map[string]string{
	"variables.leaseDurationText": "variables.leaseDuration",
	"variables.renewDeadlineText": "variables.renewDeadline",
	"variables.retryPeriodText":   "variables.retryPeriod",
}

// jsonFields lists a struct type's JSON field names and types, with inlined structs flattened.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return out
	}
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && (name == "" || strings.Contains(opts, "inline")) {
			for k, v := range jsonFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}
