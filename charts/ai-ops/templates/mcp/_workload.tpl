{{/*
A bundled MCP server: ServiceAccount, Deployment and Service. include with
(dict "ctx" $ "server" "kubernetes"|"netops" "fullname" NAME "serviceAccount" NAME "automountToken" BOOL "args" LIST "env" LIST)
*/}}
{{- define "ai-ops.mcp.workload" -}}
{{- $ := .ctx }}
{{- $cfg := index $.Values.mcpServers .server }}
{{- $component := printf "mcp-%s" .server }}
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
        - name: {{ .server }}
          image: {{ include "ai-ops.image" $ }}
          imagePullPolicy: {{ $.Values.image.pullPolicy }}
          args:
            - mcp
            - {{ .server }}
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
{{- if $cfg.mcpServer.create }}
---
# Registers the server with ai-ops. A hook: on a first install the MCPServer kind (a CRD of this same
# release) does not exist yet when Helm resolves the release's ordinary manifests.
apiVersion: ai-ops.dev/v1alpha1
kind: MCPServer
metadata:
  name: {{ .fullname }}
  namespace: {{ $.Release.Namespace }}
  labels:
    {{- include "ai-ops.componentLabels" (dict "ctx" $ "component" $component) | nindent 4 }}
  annotations:
    helm.sh/hook: post-install,post-upgrade
    helm.sh/hook-delete-policy: before-hook-creation
spec:
  transport: streamable_http
  url: {{ printf "http://%s.%s.svc:%d%s" .fullname $.Release.Namespace (int $cfg.port) $cfg.path | quote }}
  description: {{ .description | quote }}
  scope: internal
  healthCheck:
    intervalSeconds: {{ $cfg.mcpServer.intervalSeconds }}
    path: /healthz
{{- end }}
{{- end }}
