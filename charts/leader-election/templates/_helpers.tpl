{{/* The chart's name, or nameOverride. */}}
{{- define "leader-election.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object's name: fullnameOverride, else the release name when it already contains the chart's
name (a release called leader-election gives the names config/ uses), else "<release>-<chart>".
Kept to 40 characters so that the longest suffix ("-selfsigned-issuer") still fits in 63.
*/}}
{{- define "leader-election.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "leader-election.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "leader-election.labels" -}}
helm.sh/chart: {{ include "leader-election.chart" . }}
app.kubernetes.io/name: {{ include "leader-election.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: leader-election
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels that select the webhook's pods (never change them: a Deployment's selector is immutable). */}}
{{- define "leader-election.selectorLabels" -}}
app.kubernetes.io/name: {{ include "leader-election.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: webhook
{{- end }}

{{/*
The admission mode, "webhook" or "policy"; any other value stops the render with the value and the accepted ones.
Every template that depends on the mode asks this, never .Values.admission.mode directly.
*/}}
{{- define "leader-election.admissionMode" -}}
{{- $mode := .Values.admission.mode }}
{{- if not (has $mode (list "webhook" "policy")) }}
{{- fail (printf "admission.mode %q: want \"webhook\" (a mutating admission webhook, the default) or \"policy\" (MutatingAdmissionPolicies in the API server, Kubernetes 1.36 and newer)" (toString $mode)) }}
{{- end }}
{{- $mode }}
{{- end }}

{{/* Names shared between templates. */}}
{{- define "leader-election.webhookName" -}}
{{- include "leader-election.fullname" . }}-webhook
{{- end }}

{{- define "leader-election.electorClusterRole" -}}
{{- include "leader-election.fullname" . }}-elector
{{- end }}

{{- define "leader-election.tlsSecret" -}}
{{- include "leader-election.fullname" . }}-webhook-tls
{{- end }}

{{- define "leader-election.certificate" -}}
{{- include "leader-election.fullname" . }}-serving-cert
{{- end }}

{{/* The DNS names the serving certificate covers: the Service's, then webhook.tls.extraDNSNames. */}}
{{- define "leader-election.dnsNames" -}}
{{- $svc := include "leader-election.webhookName" . }}
{{- $names := list (printf "%s.%s.svc" $svc .Release.Namespace) (printf "%s.%s.svc.cluster.local" $svc .Release.Namespace) }}
{{- concat $names .Values.webhook.tls.extraDNSNames | uniq | toJson }}
{{- end }}

{{/* The namespaces the webhook never serves, comma-separated: kube-system, its own, webhook.excludeNamespaces. */}}
{{- define "leader-election.excludedNamespaces" -}}
{{- concat (list "kube-system" .Release.Namespace) .Values.webhook.excludeNamespaces | uniq | join "," }}
{{- end }}

{{- define "leader-election.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "leader-election.electorImage" -}}
{{- printf "%s:%s" .Values.elector.image.repository (default .Chart.AppVersion .Values.elector.image.tag) }}
{{- end }}

{{/* Monitoring: labels on every monitoring object, and the names Prometheus gives the scrape jobs. */}}
{{- define "leader-election.monitoringLabels" -}}
{{ include "leader-election.labels" . }}
{{- with .Values.monitoring.labels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "leader-election.metricsService" -}}
{{- include "leader-election.fullname" . }}-webhook-metrics
{{- end }}

{{- define "leader-election.podMonitor" -}}
{{- include "leader-election.fullname" . }}-elector
{{- end }}

{{/* The Prometheus Operator names a ServiceMonitor's job after the Service, a PodMonitor's "<namespace>/<name>". */}}
{{- define "leader-election.webhookSelector" -}}
job="{{ include "leader-election.metricsService" . }}", namespace="{{ .Release.Namespace }}"
{{- end }}

{{- define "leader-election.electorSelector" -}}
job="{{ .Release.Namespace }}/{{ include "leader-election.podMonitor" . }}"
{{- end }}
