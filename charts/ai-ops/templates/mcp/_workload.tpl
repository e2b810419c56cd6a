{{/*
A bundled MCP server: ServiceAccount, Deployment and Service. include with
(dict "ctx" $ "server" "kubernetes"|"kubernetesActions"|"netops" "fullname" NAME "serviceAccount" NAME "automountToken" BOOL "env" LIST
 ["args" LIST]). The values key is camelCase; the subcommand, container and component are its kebab-case.
*/}}
{{- define "ai-ops.mcp.workload" -}}
{{- $ := .ctx }}
{{- $cfg := index $.Values.mcpServers .server }}
{{- $command := kebabcase .server }}
{{- $component := printf "mcp-%s" $command }}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ .serviceAccount }}
  namespace: {{ $.Release.Namespace }}
  labels:
    {{- include "ai-ops.componentLabels" (dict "ctx" $ "component" $component) | nindent 4 }}
  {{- with $cfg.serviceAccount.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
automountServiceAccountToken: false
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .fullname }}
  namespace: {{ $.Release.Namespace }}
  labels:
    {{- include "ai-ops.componentLabels" (dict "ctx" $ "component" $component) | nindent 4 }}
spec:
  replicas: 1
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "ai-ops.componentSelectorLabels" (dict "ctx" $ "component" $component) | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "ai-ops.componentSelectorLabels" (dict "ctx" $ "component" $component) | nindent 8 }}
      {{- with $cfg.podAnnotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      serviceAccountName: {{ .serviceAccount }}
      automountServiceAccountToken: {{ .automountToken }}
      securityContext:
        {{- include "ai-ops.podSecurityContext" (dict "uid" 10001) | nindent 8 }}
      {{- with include "ai-ops.scheduling" $ | trim }}{{ . | nindent 6 }}{{ end }}
      containers:
        - name: {{ $command }}
          image: {{ include "ai-ops.image" $ }}
          imagePullPolicy: {{ $.Values.image.pullPolicy }}
          args:
            - mcp
            - {{ $command }}
            - --host
            - 0.0.0.0
            - --port
            - {{ $cfg.port | quote }}
            - --path
            - {{ $cfg.path | quote }}
            - --max-response-bytes
            - {{ $cfg.maxResponseBytes | quote }}
            - --log-level
            - {{ $cfg.logLevel | quote }}
            {{- range .args }}
            - {{ . | quote }}
            {{- end }}
          {{- if or .env $cfg.extraEnv }}
          env:
            {{- with .env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
            {{- with $cfg.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- end }}
          ports:
            - name: mcp
              containerPort: {{ $cfg.port }}
              protocol: TCP
          readinessProbe:
            httpGet:
              path: /healthz
              port: mcp
            periodSeconds: 10
            timeoutSeconds: 3
          livenessProbe:
            httpGet:
              path: /healthz
              port: mcp
            initialDelaySeconds: 10
            periodSeconds: 20
            timeoutSeconds: 5
          securityContext:
            {{- include "ai-ops.containerSecurityContext" $ | nindent 12 }}
          resources:
            {{- toYaml $cfg.resources | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
---
apiVersion: v1
kind: Service
metadata:
  name: {{ .fullname }}
  namespace: {{ $.Release.Namespace }}
  labels:
    {{- include "ai-ops.componentLabels" (dict "ctx" $ "component" $component) | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- include "ai-ops.componentSelectorLabels" (dict "ctx" $ "component" $component) | nindent 4 }}
  ports:
    - name: mcp
      port: {{ $cfg.port }}
      targetPort: mcp
      protocol: TCP
{{- end }}

{{/* The MCPServer registering a bundled server (created by the register Job, see register.yaml).
     include with (dict "ctx" $ "server" NAME "fullname" NAME "description" TEXT); prints JSON. */}}
{{- define "ai-ops.mcp.mcpServer" -}}
{{- $ := .ctx }}
{{- $cfg := index $.Values.mcpServers .server }}
{{- $labels := include "ai-ops.componentLabels" (dict "ctx" $ "component" (printf "mcp-%s" (kebabcase .server))) | fromYaml }}
{{- $spec := dict
  "transport" "streamable_http"
  "url" (printf "http://%s.%s.svc:%d%s" .fullname $.Release.Namespace (int $cfg.port) $cfg.path)
  "description" .description
  "scope" "internal"
  "healthCheck" (dict "intervalSeconds" (int $cfg.mcpServer.intervalSeconds) "path" "/healthz") }}
{{- dict "apiVersion" "ai-ops.dev/v1alpha1" "kind" "MCPServer" "metadata" (dict "name" .fullname "namespace" $.Release.Namespace "labels" $labels) "spec" $spec | toJson }}
{{- end }}
