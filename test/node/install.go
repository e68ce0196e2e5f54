package node

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// WebhookNamespace is where InstallChart installs the chart.
const WebhookNamespace = "leader-election-system"

// InstallChart installs charts/leader-election as a user would (`helm install`), with the images this node has
// loaded (they cannot be pulled here) and the chart's own self-signed certificate, and waits for the webhook to
// be ready. helm comes from PATH or bin/tools (make tools).
func (n *Node) InstallChart(ctx context.Context, extraSet ...string) error {
	helm, err := exec.LookPath("helm")
	if err != nil {
		helm = filepath.Join(n.opts.RepoRoot, "bin", "tools", "helm")
		if _, err := os.Stat(helm); err != nil {
			return fmt.Errorf("helm is neither on PATH nor in bin/tools; run make tools")
		}
	}
	args := []string{"install", "leader-election", filepath.Join(n.opts.RepoRoot, "charts", "leader-election"),
		"--kubeconfig", n.AdminKubeconfig, "--namespace", WebhookNamespace, "--create-namespace",
		"--set", "certManager.enabled=false", "--set", "image.pullPolicy=Never", "--wait", "--timeout", "3m"}
	for _, s := range extraSet {
		args = append(args, "--set", s)
	}
	cmd := exec.CommandContext(ctx, helm, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("helm %v: %w\n%s", args, err, out.String())
	}
	return nil
}

// ChartAppVersion is the chart's appVersion: the tag of the images it installs by default.
func ChartAppVersion(repoRoot string) (string, error) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "charts", "leader-election", "Chart.yaml"))
	if err != nil {
		return "", err
	}
	m := regexp.MustCompile(`(?m)^appVersion:\s*"?([^"\s]+)"?`).FindSubmatch(data)
	if m == nil {
		return "", fmt.Errorf("charts/leader-election/Chart.yaml has no appVersion")
	}
	return string(m[1]), nil
}

// RunSampleApp turns config/samples' pod template into one that runs this node's sample app (test/node/app)
// instead of the image the sample names, which cannot be pulled here: the same container, ports and security
// context, plus the pod's name for the app's answers and a readiness probe the app can fail on request.
func RunSampleApp(tmpl *corev1.PodTemplateSpec) {
	c := &tmpl.Spec.Containers[0]
	c.Image, c.ImagePullPolicy = AppImage, corev1.PullNever
	c.Env = append(c.Env, corev1.EnvVar{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}})
	c.ReadinessProbe = &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(8080)}},
		PeriodSeconds: 1, TimeoutSeconds: 1, FailureThreshold: 1,
	}
}
