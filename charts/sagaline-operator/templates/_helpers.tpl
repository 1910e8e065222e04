{{/*
The chart's name: the chart's, or nameOverride.
*/}}
{{- define "sagaline-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The objects' full name: fullnameOverride, else the release name when it contains the chart's
name, else <release>-<name>. 63 characters at most (a DNS label).
*/}}
{{- define "sagaline-operator.fullname" -}}
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

{{/*
The name of cluster-scoped objects (ClusterRole, ClusterRoleBinding): the full name and the
release namespace, so that releases in two namespaces never share one.
*/}}
{{- define "sagaline-operator.clusterName" -}}
{{- printf "%s-%s" (include "sagaline-operator.fullname" .) .Release.Namespace | trunc 253 }}
{{- end }}

{{/*
chart label: name-version.
*/}}
{{- define "sagaline-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The labels that select the operator's pod (never change them: a Deployment's selector is
immutable).
*/}}
{{- define "sagaline-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sagaline-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The labels of every object.
*/}}
{{- define "sagaline-operator.labels" -}}
helm.sh/chart: {{ include "sagaline-operator.chart" . }}
{{ include "sagaline-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: sagaline
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
The ServiceAccount the operator runs as.
*/}}
{{- define "sagaline-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sagaline-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference: repository@digest, else repository:tag (tag default: the appVersion).
*/}}
{{- define "sagaline-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The namespaces the operator watches without watch.clusterwide, as a JSON list: watch.namespaces,
else the release namespace.
*/}}
{{- define "sagaline-operator.watchedNamespaces" -}}
{{- if .Values.watch.namespaces }}
{{- toJson .Values.watch.namespaces }}
{{- else }}
{{- list .Release.Namespace | toJson }}
{{- end }}
{{- end }}

{{/*
What the operator may do, exactly: read and patch its Sagas and their status, manage what a Saga
becomes (KafkaTopics, KafkaUsers, Deployments, Services, ConfigMaps, PodDisruptionBudgets), and
report Events. No Secrets (the pods read their database Secret themselves), no wildcards.
*/}}
{{- define "sagaline-operator.rules" -}}
- apiGroups: [sagaline.io]
  resources: [sagas]
  verbs: [get, list, watch, patch]
- apiGroups: [sagaline.io]
  resources: [sagas/status]
  verbs: [get, patch]
- apiGroups: [kafka.strimzi.io]
  resources: [kafkatopics, kafkausers]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [configmaps, services]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end }}
