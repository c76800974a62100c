{{/*
The operator pod, the same whether a Deployment (one shard, `replicas` with peering) or a
StatefulSet (`sharding.shards` above 1, one pod per shard) runs it.
*/}}
{{- define "downtime-operator.podTemplate" -}}
metadata:
  labels:
    {{- include "downtime-operator.labels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  serviceAccountName: {{ include "downtime-operator.serviceAccountName" . }}
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  containers:
    - name: operator
      image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args: [run]
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      ports:
        - name: http
          containerPort: {{ .Values.adminApi.port }}
          protocol: TCP
        - name: metrics
          containerPort: {{ .Values.metrics.port }}
          protocol: TCP
      env:
        - name: DATABASE_URL
          valueFrom:
            secretKeyRef:
              name: {{ include "downtime-operator.databaseSecret" . }}
              key: {{ .Values.database.secretKey }}
        {{- if .Values.watchNamespaces }}
        - name: WATCH_NAMESPACES
          value: {{ join "," .Values.watchNamespaces | quote }}
        {{- end }}
        {{- if .Values.peering.enabled }}
        - name: PEERING_NAME
          value: {{ include "downtime-operator.peeringName" . | quote }}
        - name: PEERING_LIFETIME_SECONDS
          value: {{ .Values.peering.lifetime | quote }}
        {{- end }}
        # The pod's name: kopf's identity in the peering object, and the owner of the
        # notifications this pod is sending (taken back at once after a container restart).
        - name: POD_ID
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        {{- if gt (int .Values.sharding.shards) 1 }}
        - name: SHARD_COUNT
          value: {{ .Values.sharding.shards | quote }}
        # The StatefulSet pod's ordinal (Kubernetes 1.28+ labels each pod with it).
        - name: SHARD_INDEX
          valueFrom:
            fieldRef:
              fieldPath: metadata.labels['apps.kubernetes.io/pod-index']
        {{- end }}
        - name: METRICS_PORT
          value: {{ .Values.metrics.port | quote }}
        - name: API_PORT
          value: {{ .Values.adminApi.port | quote }}
        {{- if .Values.adminApi.existingSecret }}
        - name: ADMIN_API_KEYS_FILE
          value: {{ .Values.adminApi.mountPath | quote }}
        {{- end }}
        {{- if .Values.logEncryption.existingSecret }}
        - name: LOG_ENCRYPTION_KEYS_FILE
          value: {{ .Values.logEncryption.mountPath | quote }}
        {{- with .Values.logEncryption.activeKey }}
        - name: LOG_ENCRYPTION_ACTIVE_KEY
          value: {{ . | quote }}
        {{- end }}
        {{- end }}
        - name: LOG_LEVEL
          value: {{ .Values.operator.logLevel | quote }}
        - name: LOG_JSON
          value: {{ .Values.operator.logJson | quote }}
        - name: STATUS_SYNC_PERIOD_SECONDS
          value: {{ .Values.operator.statusSyncPeriodSeconds | quote }}
        - name: RETENTION_DAYS
          value: {{ .Values.operator.retentionDays | quote }}
        - name: LOG_FILES_DIR
          value: {{ .Values.logFiles.mountPath | quote }}
        - name: KUBERNETES_CONTEXT_ENABLED
          value: {{ .Values.kubernetesContext.enabled | quote }}
        - name: LOKI_ENABLED
          value: {{ .Values.loki.enabled | quote }}
        {{- if .Values.loki.enabled }}
        - name: LOKI_QUERY_URL
          value: {{ required "loki.queryUrl is required when loki.enabled is true" .Values.loki.queryUrl | quote }}
        {{- with .Values.loki.tenantId }}
        - name: LOKI_TENANT_ID
          value: {{ . | quote }}
        {{- end }}
        {{- with .Values.loki.existingSecret }}
        - name: GRAFANA_LOKI_USERNAME
          valueFrom:
            secretKeyRef:
              name: {{ . }}
              key: {{ $.Values.loki.usernameKey }}
        - name: GRAFANA_LOKI_API_KEY
          valueFrom:
            secretKeyRef:
              name: {{ . }}
              key: {{ $.Values.loki.apiKeyKey }}
        {{- end }}
        {{- end }}
        {{- with .Values.prometheus.url }}
        - name: PROMETHEUS_URL
          value: {{ . | quote }}
        {{- end }}
        {{- with .Values.prometheus.orgId }}
        - name: PROMETHEUS_ORG_ID
          value: {{ . | quote }}
        {{- end }}
        {{- with .Values.prometheus.existingSecret }}
        {{- range $variable, $key := dict "PROMETHEUS_USERNAME" $.Values.prometheus.usernameKey "PROMETHEUS_PASSWORD" $.Values.prometheus.passwordKey "PROMETHEUS_BEARER_TOKEN" $.Values.prometheus.bearerTokenKey }}
        {{- if $key }}
        - name: {{ $variable }}
          valueFrom:
            secretKeyRef:
              name: {{ $.Values.prometheus.existingSecret }}
              key: {{ $key }}
        {{- end }}
        {{- end }}
        {{- end }}
        {{- with .Values.operator.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      livenessProbe:
        httpGet:
          path: /healthz
          port: metrics
        {{- toYaml .Values.livenessProbe | nindent 8 }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: metrics
        {{- toYaml .Values.readinessProbe | nindent 8 }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        - name: log-files
          mountPath: {{ .Values.logFiles.mountPath }}
        {{- if .Values.adminApi.existingSecret }}
        - name: api-keys
          mountPath: {{ .Values.adminApi.mountPath }}
          readOnly: true
        {{- end }}
        {{- if .Values.logEncryption.existingSecret }}
        - name: log-keys
          mountPath: {{ .Values.logEncryption.mountPath }}
          readOnly: true
        {{- end }}
  volumes:
    # The root filesystem is read-only; these are the only writable paths.
    - name: tmp
      emptyDir: {}
    - name: log-files
      {{- if .Values.logFiles.persistence.enabled }}
      persistentVolumeClaim:
        claimName: {{ .Values.logFiles.persistence.existingClaim | default (printf "%s-logs" (include "downtime-operator.fullname" .)) }}
      {{- else }}
      emptyDir: {}
      {{- end }}
    {{- if .Values.adminApi.existingSecret }}
    - name: api-keys
      secret:
        secretName: {{ .Values.adminApi.existingSecret }}
    {{- end }}
    {{- if .Values.logEncryption.existingSecret }}
    - name: log-keys
      secret:
        secretName: {{ .Values.logEncryption.existingSecret }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
