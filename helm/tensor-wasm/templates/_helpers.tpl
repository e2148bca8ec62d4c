{{/* Names and labels shared by every template. */}}

{{- define "tensor-wasm.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The gateway's name: the release name when it already contains the chart name
(`helm install tensor-wasm ...` gives deployment/tensor-wasm, svc/tensor-wasm,
the names docs/runbooks/rollback.md uses), else "<release>-<chart>".
*/}}
{{- define "tensor-wasm.fullname" -}}
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

{{- define "tensor-wasm.daemonName" -}}
{{- printf "%s-tensorcast-daemon" (include "tensor-wasm.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tensor-wasm.globalStoreName" -}}
{{- printf "%s-global-store" (include "tensor-wasm.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tensor-wasm.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tensor-wasm.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "tensor-wasm.labels" -}}
helm.sh/chart: {{ include "tensor-wasm.chart" . }}
app.kubernetes.io/name: {{ include "tensor-wasm.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ default .Chart.AppVersion .Values.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tensor-wasm
{{- end }}

{{/* Selector labels: never change them on upgrade (selectors are immutable). */}}
{{- define "tensor-wasm.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tensor-wasm.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "tensor-wasm.secretName" -}}
{{- default (printf "%s-tokens" (include "tensor-wasm.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{/* True (non-empty) when the gateway reads tokens from a Secret. */}}
{{- define "tensor-wasm.hasSecret" -}}
{{- if or .Values.auth.existingSecret .Values.auth.tokens .Values.auth.metricsToken }}true{{ end }}
{{- end }}

{{- define "tensor-wasm.pvcName" -}}
{{- default (printf "%s-home" (include "tensor-wasm.fullname" .)) .Values.persistence.existingClaim }}
{{- end }}

{{- define "tensor-wasm.globalStoreAddress" -}}
{{- if .Values.tensorcast.globalStore.enabled }}
{{- printf "%s.%s.svc.cluster.local:%v" (include "tensor-wasm.globalStoreName" .) .Release.Namespace .Values.tensorcast.globalStore.port }}
{{- else }}
{{- .Values.tensorcast.globalStore.externalAddress }}
{{- end }}
{{- end }}

{{- define "tensor-wasm.clusterTokenSecretName" -}}
{{- default (printf "%s-cluster-token" (include "tensor-wasm.fullname" .)) .Values.tensorcast.clusterToken.existingSecret }}
{{- end }}
