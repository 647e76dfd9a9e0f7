{{/*
Names. With release "friendgate" every object is named as config/default names it.
*/}}
{{- define "friendgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "friendgate.fullname" -}}
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

{{- define "friendgate.controllerName" -}}{{ include "friendgate.fullname" . }}-controller{{- end }}
{{- define "friendgate.webhookName" -}}{{ include "friendgate.fullname" . }}-webhook{{- end }}
{{/* The Service the IM servers call. */}}
{{- define "friendgate.callbackServiceName" -}}{{ include "friendgate.fullname" . }}{{- end }}
{{/* The admission webhook's Service, Secret and configuration (controller flags). */}}
{{- define "friendgate.admissionServiceName" -}}{{ include "friendgate.fullname" . }}-webhook-service{{- end }}
{{- define "friendgate.admissionConfigName" -}}{{ include "friendgate.fullname" . }}-validating-webhook-configuration{{- end }}
{{- define "friendgate.admissionSecretName" -}}
{{- if .Values.admission.certManager.enabled -}}
{{ include "friendgate.fullname" . }}-admission-tls
{{- else -}}
{{ include "friendgate.fullname" . }}-webhook-server-cert
{{- end -}}
{{- end }}
{{- define "friendgate.tencentSecretName" -}}
{{- if .Values.tencent.existingSecret -}}
{{ .Values.tencent.existingSecret }}
{{- else -}}
{{ include "friendgate.fullname" . }}-tencent-tokens
{{- end -}}
{{- end }}
{{- define "friendgate.callbackTLSSecretName" -}}
{{- if eq .Values.webhook.tls.mode "existingSecret" -}}
{{ .Values.webhook.tls.existingSecret }}
{{- else -}}
{{ include "friendgate.fullname" . }}-callback-tls
{{- end -}}
{{- end }}

{{/* Whether the webhook replicas read Tencent tokens from a Secret. */}}
{{- define "friendgate.tencentTokens" -}}
{{- if or .Values.tencent.existingSecret .Values.tencent.tokens }}true{{ end }}
{{- end }}

{{/* "true" when the callback replicas mount a Secret of the Redis that counts limits. */}}
{{- define "friendgate.redisSecrets" -}}
{{- with .Values.limits.redis }}
{{- if and .address (or .password.existingSecret (and .tls.enabled .tls.caSecret)) }}true{{ end }}
{{- end }}
{{- end }}

{{/* Scheme of the callback port. */}}
{{- define "friendgate.callbackScheme" -}}
{{- if eq .Values.webhook.tls.mode "none" }}http{{ else }}https{{ end }}
{{- end }}

{{/* Labels. */}}
{{- define "friendgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "friendgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: friendgate
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "friendgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "friendgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one component: dict "root" $ "component" "controller"|"webhook". */}}
{{- define "friendgate.componentLabels" -}}
{{ include "friendgate.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "friendgate.componentSelectorLabels" -}}
{{ include "friendgate.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The image reference. */}}
{{- define "friendgate.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end }}

{{/* Logging flags shared by both Deployments. */}}
{{- define "friendgate.logArgs" -}}
- --zap-log-level={{ .Values.logging.level }}
- --zap-encoder={{ .Values.logging.encoder }}
{{- end }}

{{/*
Pod and container security context: non-root, read-only root filesystem, no privilege
escalation, no capabilities, the runtime's default seccomp profile (restricted Pod
Security Standard).
*/}}
{{- define "friendgate.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "friendgate.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end }}

{{/*
Topology spread constraints: dict "root" $ "component" ... "constraints" list. A
constraint without a labelSelector selects this component's pods.
*/}}
{{- define "friendgate.topologySpread" -}}
{{- $out := list }}
{{- range .constraints }}
{{- $c := deepCopy . }}
{{- if not (hasKey $c "labelSelector") }}
{{- $_ := set $c "labelSelector" (dict "matchLabels" (include "friendgate.componentSelectorLabels" $ | fromYaml)) }}
{{- end }}
{{- $out = append $out $c }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/*
RBAC rules from the manifests controller-gen generates from the +kubebuilder:rbac markers
(config/rbac, copied into files/generated by `make chart-sync`; a test keeps the copies
identical), so the chart grants exactly what the code declares. Arguments:
dict "root" $ "file" <path under files/> "kind" "ClusterRole"|"Role".
The generated names of the objects the controller may update are replaced by this
release's names, and with cert-manager issuing the admission certificate the rules that
only the built-in rotator needs (Secrets, webhook configurations) are left out.
*/}}
{{- define "friendgate.generatedRules" -}}
{{- $root := .root }}
{{- $rename := dict
  "friendgate-validating-webhook-configuration" (include "friendgate.admissionConfigName" $root)
  "friendgate-webhook-server-cert" (include "friendgate.admissionSecretName" $root) }}
{{- $rules := list }}
{{- range $doc := regexSplit "(?m)^---\\s*$" ($root.Files.Get .file) -1 }}
{{- $obj := fromYaml $doc }}
{{- if eq (get $obj "kind") $.kind }}
{{- range $rule := $obj.rules }}
{{- $rotatorOnly := or (has "secrets" $rule.resources) (has "validatingwebhookconfigurations" $rule.resources) }}
{{- if not (and $rotatorOnly $root.Values.admission.certManager.enabled) }}
{{- $r := deepCopy $rule }}
{{- if hasKey $r "resourceNames" }}
{{- $names := list }}
{{- range $r.resourceNames }}
{{- $names = append $names (get $rename . | default .) }}
{{- end }}
{{- $_ := set $r "resourceNames" $names }}
{{- end }}
{{- $rules = append $rules $r }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- if not $rules }}
{{- fail (printf "no %s rules found in %s: run make chart-sync" .kind .file) }}
{{- end }}
{{- toYaml $rules }}
{{- end }}

{{/*
Checks across values that the schema cannot express; each failure names the values.
*/}}
{{- define "friendgate.validate" -}}
{{- if and (gt (int .Values.controller.replicas) 1) (not .Values.controller.leaderElection) }}
{{- fail "controller.leaderElection must be true with controller.replicas > 1: only one replica may write FriendPolicy status" }}
{{- end }}
{{- if and .Values.tencent.existingSecret .Values.tencent.tokens }}
{{- fail "set tencent.existingSecret or tencent.tokens, not both" }}
{{- end }}
{{- if and (eq .Values.webhook.tls.mode "existingSecret") (not .Values.webhook.tls.existingSecret) }}
{{- fail "webhook.tls.mode existingSecret needs webhook.tls.existingSecret (a kubernetes.io/tls Secret)" }}
{{- end }}
{{- if and (eq .Values.webhook.tls.mode "certManager") (not .Values.webhook.tls.certManager.issuerRef.name) }}
{{- fail "webhook.tls.mode certManager needs webhook.tls.certManager.issuerRef.name: the IM servers must trust the issuer" }}
{{- end }}
{{- if and .Values.networkPolicy.enabled (not (or .Values.networkPolicy.callbacks.namespaces .Values.networkPolicy.callbacks.cidrs)) }}
{{- fail "networkPolicy.enabled needs networkPolicy.callbacks.namespaces or networkPolicy.callbacks.cidrs: otherwise no IM server could call friendgate" }}
{{- end }}
{{- if and .Values.webhook.autoscaling.enabled (lt (int .Values.webhook.autoscaling.maxReplicas) (int .Values.webhook.autoscaling.minReplicas)) }}
{{- fail "webhook.autoscaling.maxReplicas must not be below webhook.autoscaling.minReplicas" }}
{{- end }}
{{- if and .Values.webhook.autoscaling.enabled (not (or .Values.webhook.autoscaling.targetCPUUtilizationPercentage .Values.webhook.autoscaling.targetMemoryUtilizationPercentage)) }}
{{- fail "webhook.autoscaling.enabled needs targetCPUUtilizationPercentage or targetMemoryUtilizationPercentage" }}
{{- end }}
{{- if and .Values.webhook.tls.clientCA.existingSecret (eq .Values.webhook.tls.mode "none") }}
{{- fail "webhook.tls.clientCA needs webhook.tls.mode certManager or existingSecret: client certificates are a TLS feature" }}
{{- end }}
{{- if lt (int64 .Values.webhook.maxBatchBodyBytes) (int64 .Values.webhook.maxBodyBytes) }}
{{- fail "webhook.maxBatchBodyBytes must be at least webhook.maxBodyBytes" }}
{{- end }}
{{- if lt (int64 .Values.webhook.maxInflightBodyBytes) (int64 .Values.webhook.maxBatchBodyBytes) }}
{{- fail "webhook.maxInflightBodyBytes must be at least webhook.maxBatchBodyBytes: a replica must be able to hold one whole callback" }}
{{- end }}
{{- with .Values.limits.redis }}
{{- if not .address }}
{{- range $value, $set := dict "username" .username "password.existingSecret" .password.existingSecret "tls.enabled" .tls.enabled "tls.caSecret" .tls.caSecret "tls.serverName" .tls.serverName }}
{{- if $set }}
{{- fail (printf "limits.redis.%s needs limits.redis.address: without it limits are counted in each replica's memory" $value) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and (not .tls.enabled) (or .tls.caSecret .tls.serverName) }}
{{- fail "limits.redis.tls.caSecret and limits.redis.tls.serverName need limits.redis.tls.enabled" }}
{{- end }}
{{- end }}
{{- end }}

{{- /* A ServiceMonitor endpoint's scheme and credentials for the secured /metrics. */}}
{{- define "friendgate.metricsAuth" -}}
{{- if .Values.metrics.secure -}}
# friendgate checks the token (a TokenReview) and its right to GET /metrics (a
# SubjectAccessReview); this one's ServiceAccount is bound to the ClusterRole
# {{ include "friendgate.fullname" . }}-metrics-reader. The certificate is self-signed.
scheme: https
authorization:
  type: Bearer
  credentials:
    name: {{ include "friendgate.fullname" . }}-metrics-reader-token
    key: token
tlsConfig:
  insecureSkipVerify: true
{{- end }}
{{- end }}
