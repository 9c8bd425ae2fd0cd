{{- define "chmigrate.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "chmigrate.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "chmigrate.labels" -}}
app.kubernetes.io/name: {{ include "chmigrate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
chmigrate.io/environment: {{ .Values.environment }}
{{- end -}}

{{- define "chmigrate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "chmigrate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "chmigrate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "chmigrate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "chmigrate.leaderElection" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicaCount) 1) -}}true{{- end -}}
{{- end -}}

{{/* The namespaces the operator watches, as a JSON list; empty: the whole
cluster (clusterWide). Default: the release namespace only. Setting both
clusterWide and watchNamespaces is refused (values.schema.json says so at
install; this says it again when schema validation is skipped). */}}
{{- define "chmigrate.watchedNamespaces" -}}
{{- if .Values.clusterWide -}}
{{- if .Values.watchNamespaces -}}
{{- fail "clusterWide: true watches every namespace; leave watchNamespaces empty (or set clusterWide: false to watch only watchNamespaces)" -}}
{{- end -}}
[]
{{- else if .Values.watchNamespaces -}}
{{- .Values.watchNamespaces | uniq | toJson -}}
{{- else -}}
{{- list .Release.Namespace | toJson -}}
{{- end -}}
{{- end -}}

{{/* The rules the controller needs on the namespaces it watches: it reads
its resources and labelled ConfigMaps through watch caches (list, watch),
reads a Secret by name only when a set needs it (get; never list or watch),
patches status and finalizers, and writes Events. tests/chart.rs checks these
against the requests the operator makes. */}}
{{- define "chmigrate.watchRules" -}}
- apiGroups: ["chmigrate.io"]
  resources: ["migrationsets", "clickhousemigrations"]
  verbs: ["list", "watch"]
- apiGroups: ["chmigrate.io"]
  resources: ["migrationsets"]
  verbs: ["patch"]
- apiGroups: ["chmigrate.io"]
  resources: ["migrationsets/status", "clickhousemigrations/status"]
  verbs: ["patch"]
- apiGroups: ["chmigrate.io"]
  resources: ["migrationsets/finalizers"]
  verbs: ["update"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}

{{/* The CustomResourceDefinitions the operator checks at start. */}}
{{- define "chmigrate.crdNames" -}}
["migrationsets.chmigrate.io", "clickhousemigrations.chmigrate.io"]
{{- end -}}
