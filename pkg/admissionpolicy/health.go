package admissionpolicy

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/leader-election/leader-election/pkg/appcheck"
	"github.com/leader-election/leader-election/pkg/contract"
	"github.com/leader-election/leader-election/pkg/inject"
)

// The health gate in CEL (pkg/inject's resolveHealth, explicitCheck and keptHealth.apply): which check the elector
// runs, the health-gate annotation's text, ELECTOR_APP_CHECK's JSON byte for byte as appcheck.Encode writes it,
// and the refusals, each message taken from Mutate refusing a pod made to trip that rule.

// Placeholder names in the pods made to be refused; none of them occurs in pkg/inject's wording.
const (
	phContainer = "placeholder-c"
	phPortName  = "placeholder-p"
	phPorts     = "placeholder-q=4321"
	phHost      = "placeholder.host"
	phScheme    = "placeholder-scheme"
	phPath      = "/placeholder-path"
	phService   = "placeholder/service"
)

// jsonString is a CEL expression writing the string expression e as encoding/json does (quotes included): the
// characters it escapes and how are read from encoding/json itself, backslash first.
func jsonString(e string) string {
	escaped := []rune{'\\', '"', '<', '>', '&', '\u2028', '\u2029'}
	for r := rune(0); r < 0x20; r++ {
		escaped = append(escaped, r)
	}
	return jsonEscape(e, escaped)
}

// jsonText is jsonString for a string appcheck.Validate (or the API server) has already refused control
// characters in, tab aside: a path, a host, a header, a scheme or a gRPC mode. It keeps the policies shorter.
func jsonText(e string) string {
	return jsonEscape(e, []rune{'\\', '"', '<', '>', '&', '\u2028', '\u2029', '\t'})
}

func jsonEscape(e string, escaped []rune) string {
	var b strings.Builder
	b.WriteString(e)
	for _, r := range escaped {
		out, err := json.Marshal(string(r))
		if err != nil {
			panic(err)
		}
		if text := string(out[1 : len(out)-1]); text != string(r) {
			fmt.Fprintf(&b, ".replace(%s, %s)", celString(string(r)), celString(text))
		}
	}
	return `'"' + ` + b.String() + ` + '"'`
}

// gateOf is the health-gate annotation Mutate writes for pod.
func gateOf(pod *corev1.Pod) string {
	out, _, err := inject.Mutate(pod, inject.DefaultConfig("v0.0.0", "placeholder/image:tag"), false)
	if err != nil {
		panic(fmt.Sprintf("pkg/inject refuses the pod the generator made to be admitted: %v", err))
	}
	return out.Annotations[contract.AnnotationHealthGate]
}

// healthPod is samplePod whose only container is named phContainer, with a readinessProbe and the named port
// phPorts.
func healthPod(annotations map[string]string, probe *corev1.Probe) *corev1.Pod {
	pod := samplePod(annotations)
	pod.Spec.Containers[0].Name = phContainer
	pod.Spec.Containers[0].ReadinessProbe = probe
	pod.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "placeholder-q", ContainerPort: 4321}}
	return pod
}

func httpProbe(port intstr.IntOrString, host, path string) *corev1.Probe {
	return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: port, Host: host, Path: path}}}
}

// cut returns text without prefix and suffix, panicking when text does not have them.
func cut(text, prefix, suffix string) string {
	if !strings.HasPrefix(text, prefix) || !strings.HasSuffix(text, suffix) {
		panic(fmt.Sprintf("pkg/inject's wording changed: %q is not %q...%q", text, prefix, suffix))
	}
	return strings.TrimSuffix(strings.TrimPrefix(text, prefix), suffix)
}

// healthVariables adds the health gate's variables: appCheck (ELECTOR_APP_CHECK, empty when not gated), healthGate
// (the annotation's text) and healthErrors.
func healthVariables(add func(name, expr string), f inject.PolicyFacts) {
	q := celString
	ann := func(key string) string { return "variables.ann[" + q(key) + "]" }
	has := func(key string) string { return q(key) + " in variables.ann" }
	E := q(contract.ContainerName)
	HC, HCont, HThr := contract.AnnotationHealthCheck, contract.AnnotationHealthContainer, contract.AnnotationHealthFailureThreshold

	add("hcSet", has(HC))
	add("hcMode", fmt.Sprintf("variables.hcSet ? %s : %s", ann(HC), q(contract.HealthCheckReadiness)))
	add("hContSet", has(HCont))
	add("hThrSet", has(HThr))
	add("hThrValid", fmt.Sprintf("!variables.hThrSet || (%[1]s.matches('^[+-]?0*[0-9]{1,3}$') && int(%[1]s) >= 1 && int(%[1]s) <= 100)", ann(HThr)))
	add("regulars", fmt.Sprintf("object.spec.containers.filter(c, c.name != %s)", E))
	add("hContainers", fmt.Sprintf("variables.hContSet ? variables.regulars.filter(c, c.name == %s) : variables.regulars.filter(c, has(c.readinessProbe) && c.name != %s)",
		ann(HCont), q(f.IstioProxyContainer)))
	add("hFound", "size(variables.hContainers) > 0")
	add("hNone", fmt.Sprintf("variables.hcMode == %s", q(contract.HealthCheckNone)))
	add("hReadiness", fmt.Sprintf("variables.hcMode == %s", q(contract.HealthCheckReadiness)))
	// namedPorts is the text portNames gives for a container c.
	namedPorts := func(c string) string {
		return fmt.Sprintf("(has(%[1]s.ports) && %[1]s.ports.exists(p, has(p.name) && p.name != '') ? %[1]s.ports.filter(p, has(p.name) && p.name != '').map(p, p.name + '=' + string(p.containerPort)).join(', ') : 'none named')", c)
	}
	portsOf := func(c, name string) string {
		return fmt.Sprintf("(has(%[1]s.ports) ? %[1]s.ports.filter(p, has(p.name) && p.name == %[2]s) : [])", c, name)
	}

	// The explicit check: http(s)://[host]:port[/path], tcp://[host]:port, grpc://:port[/service] (explicitCheck).
	add("xContainers", "variables.hFound ? variables.hContainers : variables.regulars")
	add("xSep", "variables.hcMode.indexOf('://')")
	add("xScheme", "variables.xSep >= 0 ? variables.hcMode.substring(0, variables.xSep) : ''")
	add("xRest", "variables.xSep >= 0 ? variables.hcMode.substring(variables.xSep + 3) : ''")
	add("xHostPort", "variables.xRest.indexOf('/') >= 0 ? variables.xRest.substring(0, variables.xRest.indexOf('/')) : variables.xRest")
	add("xPath", "variables.xRest.indexOf('/') >= 0 ? variables.xRest.substring(variables.xRest.indexOf('/')) : ''")
	// net.SplitHostPort: a bracketed host, or a host without colons.
	add("xSplit", `variables.xHostPort.matches('^\\[[^\\[\\]]*\\]:[^\\[\\]]*$') ? `+
		`[variables.xHostPort.substring(1, variables.xHostPort.lastIndexOf(']')), variables.xHostPort.substring(variables.xHostPort.lastIndexOf(']') + 2)] : `+
		`variables.xHostPort.matches('^[^:\\[\\]]*:[^:\\[\\]]*$') ? variables.xHostPort.split(':') : []`)
	add("xHost", "size(variables.xSplit) == 2 ? variables.xSplit[0] : ''")
	add("xPortText", "size(variables.xSplit) == 2 ? variables.xSplit[1] : ''")
	add("xHostLoopback", "variables.xHost == '' || variables.xHost.lowerAscii() == 'localhost' || (isIP(variables.xHost) && ip(variables.xHost).isLoopback())")
	// intstr.Parse: a number when strconv.ParseInt takes it as an int32, else a port name.
	add("xPortNumeric", "variables.xPortText.matches('^[+-]?0*[0-9]{1,10}$') && int(variables.xPortText) >= -2147483648 && int(variables.xPortText) <= 2147483647")
	add("xNamed", "variables.xPortNumeric || size(variables.xContainers) == 0 ? [] : "+portsOf("variables.xContainers[0]", "variables.xPortText"))
	add("xPort", "variables.xPortNumeric ? int(variables.xPortText) : size(variables.xNamed) > 0 ? variables.xNamed[0].containerPort : 0")
	add("xService", "variables.xPath.startsWith('/') ? variables.xPath.substring(1) : variables.xPath")

	checkWant := cut(wantOf(samplePod(map[string]string{HC: "x"})), "not a check; ", "")
	badCheck := func(why string) string {
		return annotationError(HC, ann(HC), why+" + "+q("; "+checkWant))
	}
	whyOf := func(pod *corev1.Pod) string { return cut(wantOf(pod), "", "; "+checkWant) }
	xWhy := func(value string, repl map[string]string) string {
		return template(whyOf(healthPod(map[string]string{HC: value}, nil)), repl)
	}
	hostWhy := xWhy("http://"+phHost+":1/", map[string]string{`"` + phHost + `"`: quoted("variables.xHost")})
	tcpPathWhy := xWhy("tcp://:1"+phPath, map[string]string{`"` + phPath + `"`: quoted("variables.xPath")})
	grpcHostWhy := xWhy("grpc://localhost:1/", nil)
	serviceWhy := xWhy("grpc://:1/"+phService, map[string]string{`"` + phService + `"`: quoted("variables.xService")})
	schemeWhy := xWhy(phScheme+"://:1/", map[string]string{`"` + phScheme + `"`: quoted("variables.xScheme")})
	portNameText := template(wantOf(healthPod(map[string]string{HC: "tcp://:" + phPortName}, nil)), map[string]string{
		`"` + phPortName + `"`: quoted("variables.xPortText"), `"` + phContainer + `"`: quoted("variables.xContainers[0].name"),
		phPorts: namedPorts("variables.xContainers[0]"),
	})
	// appcheck.Validate's refusals of a check built from the URL: the port's range and the path.
	portRangeWhy := func(field string) string {
		scheme := map[string]string{"httpGet": "http", "tcpSocket": "tcp", "grpc": "grpc"}[field]
		return xWhy(scheme+"://:70000", map[string]string{"70000": "string(variables.xPort)"})
	}
	pathWhy := xWhy("http://:1//"+phHost, map[string]string{`"//` + phHost + `"`: quoted("variables.xPath")})
	portRange := "(variables.xPort < 1 || variables.xPort > 65535)"
	add("xValidate", fmt.Sprintf("variables.xScheme in ['http', 'https'] ? [%[1]s ? %[2]s : '', %[3]s ? %[4]s : ''].filter(s, s != '') : "+
		"variables.xScheme == 'tcp' ? (%[1]s ? [%[5]s] : []) : variables.xScheme == 'grpc' && %[1]s ? [%[6]s] : []",
		portRange, portRangeWhy("httpGet"), badPath("variables.xPath"), pathWhy, portRangeWhy("tcpSocket"), portRangeWhy("grpc")))
	// Why the check is refused ('' when it is not), in explicitCheck's order; a port name the container lacks has
	// a message of its own.
	add("xPortNameMissing", "!variables.xPortNumeric && size(variables.xContainers) > 0 && size(variables.xNamed) == 0")
	add("xWhy", fmt.Sprintf("variables.xSep < 0 ? %s : size(variables.xSplit) != 2 || variables.xPortText == '' ? %s : "+
		"!variables.xHostLoopback ? %s : variables.xPortNameMissing ? '' : "+
		"!(variables.xScheme in ['http', 'https', 'tcp', 'grpc']) ? %s : "+
		"variables.xScheme == 'tcp' && variables.xPath != '' ? %s : "+
		"variables.xScheme == 'grpc' && variables.xHost != '' ? %s : "+
		"variables.xScheme == 'grpc' && variables.xService.matches('[/?#]') ? %s : "+
		"variables.xValidate.join('; ')",
		q("not a check"), q("no port"), hostWhy, schemeWhy, tcpPathWhy, grpcHostWhy, serviceWhy))
	add("xError", fmt.Sprintf("variables.xWhy != '' ? %s : variables.xPortNameMissing ? %s : ''",
		badCheck("variables.xWhy"), annotationError(HC, ann(HC), portNameText)))
	timing := func(initialDelay, timeout, period, success, failure string) string {
		return fmt.Sprintf("%s + ',\"timeoutSeconds\":' + %s + ',\"periodSeconds\":' + %s + ',\"successThreshold\":' + %s + ',\"failureThreshold\":' + %s",
			initialDelay, timeout, period, success, failure)
	}
	threshold := func(fallback string) string {
		return fmt.Sprintf("(variables.hThrSet && variables.hThrValid ? string(int(%s)) : %s)", ann(HThr), fallback)
	}
	hostJSON := func(host string) string {
		return fmt.Sprintf("(%[1]s != '' ? ',\"host\":' + %[2]s : '')", host, jsonText(host))
	}
	add("xJSON", fmt.Sprintf("'{' + (variables.xScheme in ['http', 'https'] ? "+
		"'\"httpGet\":{\"path\":' + %[1]s + ',\"port\":' + string(variables.xPort) + %[2]s + ',\"scheme\":\"' + variables.xScheme.upperAscii() + '\"}' : "+
		"variables.xScheme == 'tcp' ? '\"tcpSocket\":{\"port\":' + string(variables.xPort) + %[2]s + '}' : "+
		"'\"grpc\":{\"port\":' + string(variables.xPort) + ',\"service\":' + %[3]s + '}') + %[4]s + '}'",
		jsonText("(variables.xPath == '' ? '/' : variables.xPath)"), hostJSON("variables.xHost"), jsonString("variables.xService"),
		timing("''", q(strconv.Itoa(appcheck.DefaultTimeoutSeconds)), q(strconv.Itoa(appcheck.DefaultPeriodSeconds)), q(strconv.Itoa(appcheck.DefaultSuccessThreshold)),
			threshold("'"+strconv.Itoa(appcheck.DefaultFailureThreshold)+"'"))))

	// The health container's readinessProbe (readinessCheck, resolvePortName, appcheck.Validate).
	add("rHas", "variables.hFound && has(variables.hContainers[0].readinessProbe)")
	// Variables are evaluated lazily: rProbe is only read where rHas holds.
	add("rProbe", "variables.hContainers[0].readinessProbe")
	add("rKind", "!variables.rHas ? '' : has(variables.rProbe.httpGet) ? 'http' : has(variables.rProbe.tcpSocket) ? 'tcp' : has(variables.rProbe.grpc) ? 'grpc' : has(variables.rProbe.exec) ? 'exec' : ''")
	add("rPortNamed", "(variables.rKind == 'http' && type(variables.rProbe.httpGet.port) == string) || (variables.rKind == 'tcp' && type(variables.rProbe.tcpSocket.port) == string)")
	add("rPortName", "!variables.rPortNamed ? '' : variables.rKind == 'http' ? string(variables.rProbe.httpGet.port) : string(variables.rProbe.tcpSocket.port)")
	add("rNamed", "variables.rPortNamed ? "+portsOf("variables.hContainers[0]", "variables.rPortName")+" : []")
	add("rPort", "variables.rPortNamed ? (size(variables.rNamed) > 0 ? variables.rNamed[0].containerPort : 0) : "+
		"variables.rKind == 'http' ? int(variables.rProbe.httpGet.port) : variables.rKind == 'tcp' ? int(variables.rProbe.tcpSocket.port) : variables.rKind == 'grpc' ? variables.rProbe.grpc.port : 0")
	add("rHost", "variables.rKind == 'http' && has(variables.rProbe.httpGet.host) ? variables.rProbe.httpGet.host : variables.rKind == 'tcp' && has(variables.rProbe.tcpSocket.host) ? variables.rProbe.tcpSocket.host : ''")
	add("rPath", "variables.rKind == 'http' && has(variables.rProbe.httpGet.path) && variables.rProbe.httpGet.path != '' ? variables.rProbe.httpGet.path : '/'")
	// appcheck.Validate's refusals, each [field, value, what is accepted], in its order.
	execProbe := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{phPath}}}}
	fieldError := func(probe *corev1.Probe, value string) (field, want string) {
		text := appcheck.Validate(*probe).Error()
		field, rest, _ := strings.Cut(text, ": ")
		want = cut(rest, value+" is not accepted: ", "")
		return field, want
	}
	execField, execWant := fieldError(execProbe, `["`+phPath+`"]`)
	hostField, hostWant := fieldError(httpProbe(intstr.FromInt32(1), phHost, "/"), `"`+phHost+`"`)
	pathField, pathWant := fieldError(httpProbe(intstr.FromInt32(1), "", "//"+phHost), `"//`+phHost+`"`)
	headerProbe := httpProbe(intstr.FromInt32(1), "", "/")
	headerProbe.HTTPGet.HTTPHeaders = []corev1.HTTPHeader{{Name: phService, Value: "x"}}
	headerField, headerWant := fieldError(headerProbe, strconv.Quote(phService)+`: "x"`)
	headerPrefix := cut(headerField, "", "0]")
	// Every header httpguts refuses: a name that is not an HTTP token, a value with a control character but tab.
	add("rBadHeaders", "variables.rKind == 'http' && has(variables.rProbe.httpGet.httpHeaders) ? variables.rProbe.httpGet.httpHeaders.filter(h, "+
		"!h.name.matches(\"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$\") || (has(h.value) && h.value.matches('[\\x00-\\x08\\x0a-\\x1f\\x7f]'))) : []")
	tcpHostField := strings.Replace(hostField, "httpGet", "tcpSocket", 1)
	hostOK := "(variables.rHost == '' || variables.rHost.lowerAscii() == 'localhost' || (isIP(variables.rHost) && ip(variables.rHost).isLoopback()))"
	add("rFieldErrors", fmt.Sprintf("variables.rKind == 'exec' ? [[%[1]s, '[' + (has(variables.rProbe.exec.command) ? variables.rProbe.exec.command.map(c, %[2]s).join(' ') : '') + ']', %[3]s]] : "+
		"variables.rKind == 'http' ? [[%[4]s, %[5]s, %[6]s], [%[7]s, %[8]s, %[9]s]].filter(e, e[0] != '') + "+
		"variables.rBadHeaders.map(h, [%[12]s + string(variables.rProbe.httpGet.httpHeaders.indexOf(h)) + ']', %[13]s + ': ' + %[14]s, %[15]s]) : "+
		"variables.rKind == 'tcp' && !%[10]s ? [[%[11]s, %[5]s, %[6]s]] : []",
		q(execField), quoted("c"), q(execWant),
		fmt.Sprintf("%s ? '' : %s", hostOK, q(hostField)), quoted("variables.rHost"), q(hostWant),
		fmt.Sprintf("%s ? %s : ''", badPath("variables.rPath"), q(pathField)), quoted("variables.rPath"), q(pathWant),
		hostOK, q(tcpHostField),
		q(headerPrefix), quotedControl("h.name"), quotedControl("(has(h.value) ? h.value : '')"), q(headerWant)))

	// The readiness check's refusals and gate texts, from Mutate's.
	name := func(c string) map[string]string { return map[string]string{`"` + phContainer + `"`: quoted(c)} }
	noProbe := gateOf(healthPod(nil, nil))
	noProbeWhy := "no regular container has a readinessProbe"
	notGated := cut(noProbe, "", noProbeWhy)
	readinessText := refusal(healthPod(map[string]string{HC: contract.HealthCheckReadiness}, nil), false)
	askedHC := HC + `="` + contract.HealthCheckReadiness + `"`
	readinessFrame := strings.SplitN(readinessText, noProbeWhy, 2)
	add("hAsked", fmt.Sprintf("[variables.hcSet ? %s + %s : '', variables.hContSet ? %s + %s : ''].filter(s, s != '').join(', ')",
		q(HC+"="), quoted(ann(HC)), q(HCont+"="), quoted(ann(HCont))))
	// A container without a readinessProbe is the health container only when named (AnnotationHealthContainer).
	askedContainer := HCont + `="` + phContainer + `"`
	noProbeNamed := cut(refusal(healthPod(map[string]string{HCont: phContainer}, nil), false),
		strings.Replace(readinessFrame[0], askedHC, askedContainer, 1), readinessFrame[1])
	add("rWhy", fmt.Sprintf("!variables.hFound ? %s : %s", q(noProbeWhy), template(noProbeNamed, name("variables.hContainers[0].name"))))
	add("rExplicit", "variables.hcSet || variables.hContSet")
	readinessError := func(why string) string {
		return template(readinessText, map[string]string{askedHC: "variables.hAsked", noProbeWhy: why})
	}
	execInner := strings.ReplaceAll(appcheck.Validate(*execProbe).Error(), "\n", "; ")
	cannotRunWhy := template(cut(refusal(healthPod(map[string]string{HC: contract.HealthCheckReadiness}, execProbe), false), readinessFrame[0], readinessFrame[1]),
		map[string]string{`"` + phContainer + `"`: quoted("variables.hContainers[0].name"), execInner: "variables.rFieldErrors.map(e, " + fieldErrorText("e") + ").join('; ')"})
	execGate := gateOf(healthPod(nil, execProbe))
	const execWhat = "an exec readinessProbe"
	gateFrame := strings.SplitN(execGate, execWhat, 2)
	hostWhat := cut(gateOf(healthPod(nil, httpProbe(intstr.FromInt32(1), phHost, "/"))), gateFrame[0], gateFrame[1])
	withPrefix := cut(hostWhat, "", hostField+` "`+phHost+`"`)
	cannotRunGate := template(execGate, map[string]string{`"` + phContainer + `"`: quoted("variables.hContainers[0].name"),
		execWhat: fmt.Sprintf("(variables.rKind == 'exec' ? %s : %s + variables.rFieldErrors[0][0] + ' ' + variables.rFieldErrors[0][1])", q(execWhat), q(withPrefix))})
	readinessGate := template(gateOf(healthPod(nil, httpProbe(intstr.FromInt32(1), "", "/"))), name("variables.hContainers[0].name"))
	portNameErr := template(refusal(healthPod(nil, httpProbe(intstr.FromString(phPortName), "", "/")), false), map[string]string{
		`"` + phPortName + `"`: quoted("variables.rPortName"), `"` + phContainer + `"`: quoted("variables.hContainers[0].name"), phPorts: namedPorts("variables.hContainers[0]"),
	})
	add("hGate", fmt.Sprintf("variables.hNone ? %s : !variables.hReadiness ? %s : !variables.rHas ? %s + variables.rWhy : size(variables.rFieldErrors) > 0 ? %s : %s",
		q(gateOf(healthPod(map[string]string{HC: contract.HealthCheckNone}, nil))), q(gateOf(healthPod(map[string]string{HC: "tcp://:1"}, nil))),
		q(notGated), cannotRunGate, readinessGate))
	add("hGated", "!variables.hNone && (variables.hReadiness ? variables.rHas && !(variables.rPortNamed && size(variables.rNamed) == 0) && size(variables.rFieldErrors) == 0 : variables.xError == '')")
	add("rWhyRefused", fmt.Sprintf("!variables.rHas ? variables.rWhy : %s", cannotRunWhy))
	add("hCheckError", fmt.Sprintf("variables.hNone || (variables.hContSet && !variables.hFound) ? '' : !variables.hReadiness ? variables.xError : "+
		"variables.rHas && variables.rPortNamed && size(variables.rNamed) == 0 ? %s : "+
		"variables.rExplicit && (!variables.rHas || size(variables.rFieldErrors) > 0) ? %s : ''",
		portNameErr, readinessError("variables.rWhyRefused")))
	unset := func(key string) string {
		return fmt.Sprintf("(%s ? [%s] : [])", has(key), annotationError(key, ann(key), q(wantOf(healthPod(map[string]string{HC: contract.HealthCheckNone, key: "1"}, nil)))))
	}
	containerWant := cut(wantOf(healthPod(map[string]string{HCont: "x"}, nil)), "", phContainer)
	noCheckWant := cut(wantOf(healthPod(map[string]string{HThr: "2"}, nil)), "", noProbeWhy)
	add("hErrors", fmt.Sprintf("variables.hNone ? %s + %s : (variables.hThrValid ? [] : [%s]) + "+
		"(variables.hContSet && !variables.hFound ? [%s] : variables.hCheckError != '' ? [variables.hCheckError] : "+
		"!variables.hGated && variables.hThrSet && variables.hThrValid ? [%s] : [])",
		unset(HCont), unset(HThr),
		annotationError(HThr, ann(HThr), q(wantOf(healthPod(map[string]string{HThr: "x"}, nil)))),
		annotationError(HCont, ann(HCont), q(containerWant)+" + variables.regulars.map(c, c.name).join(', ')"),
		annotationError(HThr, ann(HThr), q(noCheckWant)+" + variables.hGate.substring("+strconv.Itoa(len(notGated))+")")))

	// ELECTOR_APP_CHECK of the readinessProbe.
	p := "variables.rProbe"
	orDefault := func(field string, def int) string {
		return fmt.Sprintf("string(has(%[1]s.%[2]s) && %[1]s.%[2]s != 0 ? %[1]s.%[2]s : %[3]d)", p, field, def)
	}
	add("rJSON", fmt.Sprintf("'{' + (variables.rKind == 'http' ? "+
		"'\"httpGet\":{\"path\":' + %[1]s + ',\"port\":' + string(variables.rPort) + %[2]s + ',\"scheme\":' + %[3]s + "+
		"(has(%[4]s.httpGet.httpHeaders) && size(%[4]s.httpGet.httpHeaders) > 0 ? ',\"httpHeaders\":[' + %[4]s.httpGet.httpHeaders.map(h, '{\"name\":' + %[5]s + ',\"value\":' + %[6]s + '}').join(',') + ']' : '') + '}' : "+
		"variables.rKind == 'tcp' ? '\"tcpSocket\":{\"port\":' + string(variables.rPort) + %[2]s + '}' : "+
		"'\"grpc\":{\"port\":' + string(variables.rPort) + ',\"service\":' + %[7]s + (has(%[4]s.grpc.mode) ? ',\"mode\":' + %[8]s : '') + '}') + %[9]s + '}'",
		jsonText("variables.rPath"), hostJSON("variables.rHost"),
		jsonText(fmt.Sprintf("(has(%[1]s.httpGet.scheme) && %[1]s.httpGet.scheme != '' ? %[1]s.httpGet.scheme : 'HTTP')", p)), p,
		jsonText("h.name"), jsonText("(has(h.value) ? h.value : '')"),
		jsonString(fmt.Sprintf("(has(%[1]s.grpc.service) ? %[1]s.grpc.service : '')", p)), jsonText(p+".grpc.mode"),
		timing(fmt.Sprintf("(has(%[1]s.initialDelaySeconds) && %[1]s.initialDelaySeconds != 0 ? ',\"initialDelaySeconds\":' + string(%[1]s.initialDelaySeconds) : '')", p),
			orDefault("timeoutSeconds", appcheck.DefaultTimeoutSeconds), orDefault("periodSeconds", appcheck.DefaultPeriodSeconds),
			orDefault("successThreshold", appcheck.DefaultSuccessThreshold), threshold(orDefault("failureThreshold", appcheck.DefaultFailureThreshold)))))

	// A pod that carries the elector keeps its check (keptHealth): the gate annotation must say what it does.
	add("storedAppCheck", fmt.Sprintf("variables.hasElector && has(variables.electors[0].env) ? variables.electors[0].env.filter(e, e.name == %s && has(e.value)).map(e, e.value) : []", q(contract.EnvAppCheck)))
	add("storedGate", fmt.Sprintf("%s ? %s : ''", has(contract.AnnotationHealthGate), ann(contract.AnnotationHealthGate)))
	gatedPrefix := cut(gateOf(healthPod(map[string]string{HC: "tcp://:1"}, nil)), "", HC)
	add("keptErrors", fmt.Sprintf("(size(variables.storedAppCheck) > 0 && variables.storedAppCheck[0] != '') != variables.storedGate.startsWith(%s) ? [%s] : []",
		q(gatedPrefix), keptMismatch()))
	add("appCheck", "variables.hasElector ? (size(variables.storedAppCheck) > 0 ? variables.storedAppCheck[0] : '') : variables.hGated ? (variables.hReadiness ? variables.rJSON : variables.xJSON) : ''")
	add("healthGate", "variables.hasElector ? variables.storedGate : variables.hGate")
	add("healthErrors", "variables.hasElector ? variables.keptErrors : variables.hErrors")
}

// fieldErrorText is a CEL expression printing e, a [field, value, want] list, as appcheck.FieldError does.
func fieldErrorText(e string) string {
	text := (&appcheck.FieldError{Field: "\x00f", Value: "\x00v", Want: "\x00w"}).Error()
	return template(text, map[string]string{"\x00f": e + "[0]", "\x00v": e + "[1]", "\x00w": e + "[2]"})
}

// keptMismatch is the refusal of an elector whose health-gate annotation does not say what its check does.
func keptMismatch() string {
	pod := samplePod(nil)
	injected, _, err := inject.Mutate(pod, inject.DefaultConfig("v0.0.0", "placeholder/image:tag"), false)
	if err != nil {
		panic(err)
	}
	const gate = "gated: placeholder"
	injected.Annotations[contract.AnnotationHealthGate] = gate
	text := refusal(injected, false)
	start := strings.Index(text, "annotation "+contract.AnnotationHealthGate)
	end := strings.LastIndex(text, "); ")
	if start < 0 || end < start {
		panic("pkg/inject's wording changed: " + text)
	}
	return template(text[start:end], map[string]string{strconv.Quote(gate): quoted("variables.storedGate")})
}

// quotedControl is quoted for a string that may hold any control character, as Go's %q writes them.
func quotedControl(e string) string {
	q := quoted(e)
	inner := strings.TrimSuffix(strings.TrimPrefix(q, `'"' + `), ` + '"'`)
	var b strings.Builder
	b.WriteString(inner)
	for r := rune(0); r <= 0x7f; r++ {
		if r == 0x20 {
			r = 0x7f
		}
		text := strconv.QuoteRune(r)
		if text = text[1 : len(text)-1]; text != string(r) && !strings.Contains(inner, celString(string(r))) {
			fmt.Fprintf(&b, ".replace(%s, %s)", celString(string(r)), celString(text))
		}
	}
	return `'"' + ` + b.String() + ` + '"'`
}

// badPath is a CEL condition: url.Parse refuses the path, or finds a host or a fragment in it (appcheck.Validate).
func badPath(path string) string {
	return fmt.Sprintf(`(%[1]s.matches('^//[^/?#]') || %[1]s.matches('#.') || %[1]s.matches('[\\x00-\\x1f\\x7f]') || `+
		`(%[1]s.indexOf('?') >= 0 ? %[1]s.substring(0, %[1]s.indexOf('?')) : %[1]s).matches('%%([^0-9A-Fa-f]|[0-9A-Fa-f][^0-9A-Fa-f]|[0-9A-Fa-f]?$)'))`, path)
}

// envVariant is one of the elector's env lists (JSON-decoded), with its traffic-mode "readiness" twin, and the
// CEL condition under which the elector has it.
type envVariant struct {
	cond     string
	env, alt []any
}

// envVariants are the elector's env lists by health gate and mesh, as Facts builds them, in the order to test
// their conditions: not gated, gated outside Istio, gated under Istio.
func envVariants(f inject.PolicyFacts) []envVariant {
	readiness := map[string]any{}
	for _, e := range toJSON(f.ElectorReadiness.Env).([]any) {
		readiness[e.(map[string]any)["name"].(string)] = e
	}
	variant := func(cond string, env []corev1.EnvVar) envVariant {
		v := envVariant{cond: cond, env: toJSON(env).([]any)}
		for _, e := range v.env {
			alt, ok := readiness[e.(map[string]any)["name"].(string)]
			if !ok {
				alt = e
			}
			v.alt = append(v.alt, alt)
		}
		return v
	}
	return []envVariant{
		variant("variables.appCheck == ''", f.UngatedEnv),
		variant("variables.mesh != "+celString(contract.MeshIstio), f.GatedNoMeshEnv),
		variant("true", f.Elector.Env),
	}
}

// commonPrefix is how many env entries, from the first, every variant has alike.
func commonPrefix(variants []envVariant) int {
	n := len(variants[0].env)
	for _, v := range variants[1:] {
		i := 0
		for i < n && i < len(v.env) && reflect.DeepEqual(v.env[i], variants[0].env[i]) && reflect.DeepEqual(v.alt[i], variants[0].alt[i]) {
			i++
		}
		n = i
	}
	return n
}

// chooseVariant is the CEL choice among one expression per variant, by the variants' conditions (the last one's
// is true).
func chooseVariant(variants []envVariant, exprs []string) string {
	expr := exprs[len(exprs)-1]
	for i := len(variants) - 2; i >= 0; i-- {
		expr = fmt.Sprintf("(%s ? %s : %s)", variants[i].cond, exprs[i], expr)
	}
	return expr
}

// envList is the CEL construction of the elector's env (of CEL type typePath): the entries every variant has,
// then the ones its variant adds, chosen by its condition.
func envList(b *builder, f inject.PolicyFacts, typePath string) (string, error) {
	variants := envVariants(f)
	common := commonPrefix(variants)
	build := func(env, alt []any) (string, error) {
		items := make([]string, len(env))
		for j := range env {
			e, err := b.construct(env[j], alt[j], typePath, "env")
			if err != nil {
				return "", err
			}
			items[j] = e
		}
		return celList(items), nil
	}
	prefix, err := build(variants[0].env[:common], variants[0].alt[:common])
	if err != nil {
		return "", err
	}
	tails := make([]string, len(variants))
	for i, v := range variants {
		if tails[i], err = build(v.env[common:], v.alt[common:]); err != nil {
			return "", err
		}
	}
	return prefix + " + " + chooseVariant(variants, tails), nil
}

// envMatches is the condition that the elector's env (got) is the one the injection builds: its variant's
// length, the common entries, and its variant's own.
func envMatches(b *builder, f inject.PolicyFacts, got string, skip map[string]bool) (string, error) {
	variants := envVariants(f)
	common := commonPrefix(variants)
	t := reflect.TypeOf(corev1.EnvVar{})
	match := func(v envVariant, from, to int) (string, error) {
		conds := []string{"true"}
		for i := from; i < to; i++ {
			c, err := b.matches(fmt.Sprintf("%s[%d]", got, i), v.env[i], v.alt[i], t, "env", skip)
			if err != nil {
				return "", err
			}
			conds = append(conds, c)
		}
		return "(" + strings.Join(conds, " && ") + ")", nil
	}
	sizes := make([]string, len(variants))
	tails := make([]string, len(variants))
	for i, v := range variants {
		sizes[i] = strconv.Itoa(len(v.env))
		var err error
		if tails[i], err = match(v, common, len(v.env)); err != nil {
			return "", err
		}
	}
	prefix, err := match(variants[0], 0, common)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("size(%s) == %s && %s && %s", got, chooseVariant(variants, sizes), prefix, chooseVariant(variants, tails)), nil
}
