{{/* Names ------------------------------------------------------------------------------------------ */}}

{{- define "ai-ops.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ai-ops.fullname" -}}
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

{{- define "ai-ops.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<fullname>-<suffix>" within 63 characters: the fullname is cut, never the suffix, so two
     components of a long release name never collide. include with (list $ "suffix"). */}}
{{- define "ai-ops.suffixed" -}}
{{- $ctx := index . 0 }}
{{- $suffix := index . 1 }}
{{- $base := include "ai-ops.fullname" $ctx | trunc (int (sub 62 (len $suffix))) | trimSuffix "-" }}
{{- printf "%s-%s" $base $suffix }}
{{- end }}

{{- define "ai-ops.operator.fullname" -}}{{ include "ai-ops.suffixed" (list . "operator") }}{{- end }}
{{- define "ai-ops.chat.fullname" -}}{{ include "ai-ops.suffixed" (list . "chat") }}{{- end }}
{{- define "ai-ops.redis.fullname" -}}{{ include "ai-ops.suffixed" (list . "redis") }}{{- end }}
{{- define "ai-ops.mcpKubernetes.fullname" -}}{{ include "ai-ops.suffixed" (list . "mcp-kubernetes") }}{{- end }}
{{- define "ai-ops.mcpKubernetesActions.fullname" -}}{{ include "ai-ops.suffixed" (list . "mcp-kubernetes-actions") }}{{- end }}
{{- define "ai-ops.mcpNetops.fullname" -}}{{ include "ai-ops.suffixed" (list . "mcp-netops") }}{{- end }}
{{- define "ai-ops.mcpPrometheus.fullname" -}}{{ include "ai-ops.suffixed" (list . "mcp-prometheus") }}{{- end }}
{{- define "ai-ops.alertmanagerTokenSecret" -}}{{ include "ai-ops.suffixed" (list . "alertmanager-token") }}{{- end }}
{{- define "ai-ops.chatAuthSecret" -}}
{{- .Values.chat.auth.existingSecret | default (include "ai-ops.suffixed" (list . "chat-auth")) }}
{{- end }}
{{- define "ai-ops.peeringName" -}}{{ include "ai-ops.fullname" . }}{{- end }}

{{- define "ai-ops.operator.serviceAccountName" -}}{{ .Values.operator.serviceAccount.name | default (include "ai-ops.operator.fullname" .) }}{{- end }}
{{- define "ai-ops.chat.serviceAccountName" -}}{{ .Values.chat.serviceAccount.name | default (include "ai-ops.chat.fullname" .) }}{{- end }}
{{- define "ai-ops.mcpKubernetes.serviceAccountName" -}}{{ .Values.mcpServers.kubernetes.serviceAccount.name | default (include "ai-ops.mcpKubernetes.fullname" .) }}{{- end }}
{{- define "ai-ops.mcpKubernetesActions.serviceAccountName" -}}{{ .Values.mcpServers.kubernetesActions.serviceAccount.name | default (include "ai-ops.mcpKubernetesActions.fullname" .) }}{{- end }}
{{- define "ai-ops.mcpNetops.serviceAccountName" -}}{{ .Values.mcpServers.netops.serviceAccount.name | default (include "ai-ops.mcpNetops.fullname" .) }}{{- end }}
{{- define "ai-ops.mcpPrometheus.serviceAccountName" -}}{{ .Values.mcpServers.prometheus.serviceAccount.name | default (include "ai-ops.mcpPrometheus.fullname" .) }}{{- end }}

{{/* A bundled MCP server is deployed: `enabled`, or for prometheus a `url` (it has nothing to do without). */}}
{{- define "ai-ops.mcp.deployed" -}}
{{- $cfg := index .ctx.Values.mcpServers .server }}
{{- if or $cfg.enabled $cfg.url }}true{{ end }}
{{- end }}

{{/* Labels ----------------------------------------------------------------------------------------- */}}

{{- define "ai-ops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ai-ops.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ai-ops.labels" -}}
helm.sh/chart: {{ include "ai-ops.chart" . }}
{{ include "ai-ops.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ai-ops
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels of one component: include with (dict "ctx" $ "component" "chat"). */}}
{{- define "ai-ops.componentLabels" -}}
{{ include "ai-ops.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "ai-ops.componentSelectorLabels" -}}
{{ include "ai-ops.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Image -------------------------------------------------------------------------------------------- */}}

{{- define "ai-ops.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Namespaces the operator watches: the list, or "*" for the whole cluster (cluster scope, empty list). */}}
{{- define "ai-ops.watchNamespaces" -}}
{{- if .Values.watchNamespaces }}
{{- join "," (uniq .Values.watchNamespaces) }}
{{- else if eq .Values.rbac.scope "cluster" }}
{{- "*" }}
{{- else }}
{{- .Release.Namespace }}
{{- end }}
{{- end }}

{{/* The watched namespaces as a list (empty for the whole cluster). */}}
{{- define "ai-ops.watchNamespaceList" -}}
{{- $watch := include "ai-ops.watchNamespaces" . }}
{{- if ne $watch "*" }}
{{- toJson (splitList "," $watch) }}
{{- else }}
{{- toJson list }}
{{- end }}
{{- end }}

{{/* Pod security: the "restricted" Pod Security Standard ------------------------------------------------ */}}

{{/* include with (dict "uid" 10001) */}}
{{- define "ai-ops.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
fsGroup: {{ .uid }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "ai-ops.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Scheduling settings shared by every pod. */}}
{{- define "ai-ops.scheduling" -}}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Redis ------------------------------------------------------------------------------------------- */}}

{{/* "bundled", "external" or "" (conversations in memory). */}}
{{- define "ai-ops.redis.mode" -}}
{{- if .Values.redis.external.url }}external{{ else if .Values.redis.enabled }}bundled{{ end }}
{{- end }}

{{/* The Secret with the Redis password; empty when there is none (in memory, or external without one). */}}
{{- define "ai-ops.redis.secretName" -}}
{{- $mode := include "ai-ops.redis.mode" . }}
{{- if eq $mode "external" }}
{{- .Values.redis.external.existingSecret }}
{{- else if eq $mode "bundled" }}
{{- .Values.redis.auth.existingSecret | default (include "ai-ops.redis.fullname" .) }}
{{- end }}
{{- end }}

{{- define "ai-ops.redis.secretKey" -}}
{{- if eq (include "ai-ops.redis.mode" .) "external" }}
{{- .Values.redis.external.existingSecretPasswordKey }}
{{- else }}
{{- .Values.redis.auth.existingSecretPasswordKey }}
{{- end }}
{{- end }}

{{/* The chat's AI_OPS_REDIS_URL, with "$(AI_OPS_REDIS_PASSWORD)" where the password goes: Kubernetes
     substitutes it from the variable defined just before, so the password itself never is in the spec. */}}
{{- define "ai-ops.redis.url" -}}
{{- $mode := include "ai-ops.redis.mode" . }}
{{- if eq $mode "bundled" }}
{{- printf "redis://:$(AI_OPS_REDIS_PASSWORD)@%s.%s.svc:6379/0" (include "ai-ops.redis.fullname" .) .Release.Namespace }}
{{- else if eq $mode "external" }}
{{- $url := urlParse .Values.redis.external.url }}
{{- if .Values.redis.external.existingSecret }}
{{- if $url.userinfo }}{{ fail "redis.external.url must not contain credentials when redis.external.existingSecret is set" }}{{ end }}
{{- printf "%s://:$(AI_OPS_REDIS_PASSWORD)@%s%s" $url.scheme $url.host $url.path }}
{{- with $url.query }}?{{ . }}{{ end }}
{{- else }}
{{- .Values.redis.external.url }}
{{- end }}
{{- end }}
{{- end }}

{{/* Secret-generation with lookup: the value already in the cluster, else a new random one.
     include with (dict "ctx" $ "name" NAME "key" KEY "value" NEW-VALUE); prints the base64 data. */}}
{{- define "ai-ops.keptSecretValue" -}}
{{- $existing := lookup "v1" "Secret" .ctx.Release.Namespace .name }}
{{- if and $existing $existing.data (hasKey $existing.data .key) }}
{{- index $existing.data .key }}
{{- else }}
{{- .value | b64enc }}
{{- end }}
{{- end }}

{{/* The runbook shard ConfigMaps the operator writes and the chat reads: ai-ops-runbooks-0 to -15
     (RUNBOOK_SHARD_PREFIX and MAX_RUNBOOK_SHARDS of ai_ops_api/agent_config.py; a chart test compares). */}}
{{- define "ai-ops.runbookShardNames" -}}
{{- range $i, $_ := until 16 }}{{ if $i }}, {{ end }}{{ printf "ai-ops-runbooks-%d" $i | quote }}{{ end }}
{{- end }}
