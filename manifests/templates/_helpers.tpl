{{/* Chart name, overridable. */}}
{{- define "downtime-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-<chart>, or the release name when it already contains the chart's. */}}
{{- define "downtime-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "downtime-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "downtime-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "downtime-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "downtime-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: downtime-operator
{{- end }}

{{- define "downtime-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "downtime-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "downtime-operator.peeringName" -}}
{{- default (include "downtime-operator.fullname" .) .Values.peering.name }}
{{- end }}

{{- define "downtime-operator.databaseSecret" -}}
{{- default (printf "%s-database" (include "downtime-operator.fullname" .)) .Values.database.existingSecret }}
{{- end }}

{{/*
The operator's permissions on its own resources, shared by the ClusterRole (cluster-wide mode)
and the per-namespace Roles (namespaced mode). Each verb is one the code uses:
  healthmonitors      list/watch (kopf's daemons), get (the monitor's uid for owner references),
                      patch (kopf's finalizer, so a daemon stops before its monitor is deleted)
  .../status          patch (state, lastCheck, uptime, conditions)
  downtimeincidents   list/watch (kopf: a manual resolve; reload when Postgres is down),
                      get (an open incident's write first checks it was not resolved meanwhile),
                      create, patch (kopf's bookkeeping annotations), delete (retention)
  .../status          patch (the incident's mutable facts)
  notificationchannels list/watch (kopf: every replica keeps every channel)
  .../status          patch (Ready, pending and failed counts, last delivery)
  maintenancewindows  get/list/watch (every replica keeps every window: its monitors are in
                      Maintenance while one is open), create (the admin API's ad-hoc windows)
  .../status          patch (ACTIVE, NEXT, MONITORS)
  events              create (IncidentOpened/Resolved/Escalated, InvalidSpec, kopf's errors,
                      NotificationFailed on channels)
  secrets             get (values of headersFrom request headers; never list or watch)
*/}}
{{- define "downtime-operator.resourceRules" -}}
- apiGroups: [monitoring.gatewayz.ai]
  resources: [healthmonitors]
  verbs: [get, list, watch, patch]
- apiGroups: [monitoring.gatewayz.ai]
  resources: [healthmonitors/status]
  verbs: [patch]
- apiGroups: [monitoring.gatewayz.ai]
  resources: [downtimeincidents]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [monitoring.gatewayz.ai]
  resources: [downtimeincidents/status]
  verbs: [patch]
- apiGroups: [monitoring.gatewayz.ai]
  resources: [notificationchannels]
  verbs: [list, watch]
- apiGroups: [monitoring.gatewayz.ai]
  resources: [notificationchannels/status]
  verbs: [patch]
- apiGroups: [monitoring.gatewayz.ai]
  resources: [maintenancewindows]
  verbs: [get, list, watch, create]
- apiGroups: [monitoring.gatewayz.ai]
  resources: [maintenancewindows/status]
  verbs: [patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
{{- if .Values.kubernetesContext.enabled }}
{{- /* The incidents' Kubernetes context: what runs behind a monitor's target, and the
targets themselves for their selectors. Read only. */}}
- apiGroups: [""]
  resources: [pods, events]
  verbs: [get, list, watch]
- apiGroups: [apps]
  resources: [replicasets]
  verbs: [get, list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [services]
  verbs: [get]
- apiGroups: [apps]
  resources: [deployments, statefulsets]
  verbs: [get]
{{- end }}
{{- end }}

{{/* kopf reads its peering object and patches its own keep-alive into it. */}}
{{- define "downtime-operator.peeringRule" -}}
- apiGroups: [kopf.dev]
  resources: [{{ . }}]
  verbs: [list, watch, patch]
{{- end }}
