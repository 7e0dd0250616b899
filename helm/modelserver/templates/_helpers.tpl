{{/*
Names, labels and the pieces every workload shares. A "workload" is one Deployment with its
Service(s), HPA, PodDisruptionBudget and NetworkPolicy: one per inference model, the gateway
and nginx. modelserver.workloads lists them so the HPA, PDB and NetworkPolicy templates range
over one list instead of repeating themselves per component.
*/}}

{{- define "modelserver.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "modelserver.fullname" -}}
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
A resource name "<fullname>-<suffix>". Kubernetes Service names are DNS labels (63 characters
at most); truncating would silently merge names, so a name that is too long is an error.
Call with (list $ "suffix").
*/}}
{{- define "modelserver.componentName" -}}
{{- $root := index . 0 -}}
{{- $name := printf "%s-%s" (include "modelserver.fullname" $root) (index . 1) }}
{{- if gt (len $name) 63 }}
{{- fail (printf "resource name %q is longer than 63 characters: shorten the release name, fullnameOverride or the model name" $name) }}
{{- end }}
{{- $name }}
{{- end }}

{{- define "modelserver.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels: only name, instance and component, because a Deployment's selector is
immutable. Call with (list $ "component").
*/}}
{{- define "modelserver.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "modelserver.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/*
Pod template labels: the selector plus version, part-of and managed-by. Not helm.sh/chart:
it changes with every chart version and would restart every pod (and reload every model) on
an upgrade that changes nothing in the pods.
*/}}
{{- define "modelserver.podLabels" -}}
{{ include "modelserver.selectorLabels" . }}
{{- $root := index . 0 }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: {{ include "modelserver.name" $root }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
{{- end }}

{{/* Labels of every resource. Call with (list $ "component"). */}}
{{- define "modelserver.labels" -}}
{{ include "modelserver.podLabels" . }}
helm.sh/chart: {{ include "modelserver.chart" (index . 0) }}
{{- end }}

{{- define "modelserver.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "modelserver.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* An image reference; the tag defaults to the chart's appVersion and is never "latest". */}}
{{- define "modelserver.imageRef" -}}
{{- $root := index . 0 -}}
{{- $image := index . 1 }}
{{- $repository := default $root.Values.image.repository $image.repository }}
{{- $tag := default (default $root.Chart.AppVersion $root.Values.image.tag) $image.tag | toString }}
{{- if eq $tag "latest" }}
{{- fail (printf "image %s: the tag \"latest\" is refused; pin a version" $repository) }}
{{- end }}
{{- printf "%s:%s" $repository $tag }}
{{- end }}

{{/* Milli-CPUs of a Kubernetes CPU quantity: "1500m" -> 1500, "2" or 2 -> 2000, "0.5" -> 500. */}}
{{- define "modelserver.cpuMillis" -}}
{{- $quantity := toString . }}
{{- if hasSuffix "m" $quantity }}
{{- trimSuffix "m" $quantity | atoi }}
{{- else }}
{{- mulf (float64 $quantity) 1000 | int }}
{{- end }}
{{- end }}

{{/*
terminationGracePeriodSeconds: the preStop pause, then the component's own drain time, then a
margin for the kubelet. The countdown starts before preStop, so a shorter grace period would
SIGKILL Gunicorn in the middle of draining. Call with (list $ $config $drainSeconds).
*/}}
{{- define "modelserver.gracePeriod" -}}
{{- $root := index . 0 -}}
{{- $config := index . 1 }}
{{- $needed := add $root.Values.preStop.seconds (index . 2) 5 }}
{{- $explicit := int $config.terminationGracePeriodSeconds }}
{{- if eq $explicit 0 }}
{{- $needed }}
{{- else if lt $explicit (int $needed) }}
{{- fail (printf "terminationGracePeriodSeconds %d is shorter than preStop.seconds + drain time + 5 = %d" $explicit (int $needed)) }}
{{- else }}
{{- $explicit }}
{{- end }}
{{- end }}

{{/*
The file whose appearance announces a pod's drain to its service (INFERENCE_DRAIN_FILE,
GATEWAY_DRAIN_FILE): on the /tmp emptyDir, which the preStop hook and the service share.
*/}}
{{- define "modelserver.drainFile" -}}
/tmp/draining
{{- end }}

{{/*
The preStop handler. Call with (dict "root" $ "drain" true|false).
- drain (inference, gateway): the image's `drain` command creates the drain file, then pauses
  preStop.seconds. From the file on, the service answers /readyz with 503 and every response
  with `Connection: close` while it keeps serving: the gateway's 1 s probes take an inference
  pod out of rotation, and nginx's upstream connections leave a gateway pod, within about a
  second of the deletion, whatever DNS caches. An exec handler works on every Kubernetes version.
- nginx: a pause; nginx's keepalive_time (derived from the pause) moves its clients meanwhile.
  mode "exec" runs /bin/sleep (both the upstream image and a Debian nginx have it; every
  Kubernetes version), "sleep" the native sleep action (Kubernetes 1.30+, no binary needed).
*/}}
{{- define "modelserver.preStop" -}}
{{- $root := .root }}
{{- $seconds := $root.Values.preStop.seconds }}
{{- if .drain -}}
preStop:
  exec:
    command: ["/usr/local/lib/modelserver/entrypoint.sh", "drain", "{{ include "modelserver.drainFile" $root }}", "{{ $seconds }}"]
{{- else if eq $root.Values.preStop.mode "exec" -}}
preStop:
  exec:
    command: ["/bin/sleep", "{{ $seconds }}"]
{{- else -}}
{{- if semverCompare "<1.30.0-0" $root.Capabilities.KubeVersion.Version }}
{{- fail (printf "Kubernetes %s has no native preStop sleep action by default: set preStop.mode=exec" $root.Capabilities.KubeVersion.Version) }}
{{- end -}}
preStop:
  sleep:
    seconds: {{ $seconds }}
{{- end }}
{{- end }}

{{/* startup, readiness and liveness probes. Call with (dict "port" "http" "ready" "/readyz" "live" "/healthz" "timing" $config.probes),
and "grpcReady" <port number> for a native gRPC readiness probe (grpc.health.v1; Kubernetes 1.24+ takes
a number there, not a port name) instead of the HTTP one. */}}
{{- define "modelserver.probes" -}}
startupProbe:
  httpGet: {path: {{ .live }}, port: {{ .port }}}
  {{- toYaml .timing.startup | nindent 2 }}
readinessProbe:
  {{- if .grpcReady }}
  grpc: {port: {{ .grpcReady }}}
  {{- else }}
  httpGet: {path: {{ .ready }}, port: {{ .port }}}
  {{- end }}
  {{- toYaml .timing.readiness | nindent 2 }}
livenessProbe:
  httpGet: {path: {{ .live }}, port: {{ .port }}}
  {{- toYaml .timing.liveness | nindent 2 }}
{{- end }}

{{/* OpenTelemetry's standard variables when tracing.otlpEndpoint is set. Call with (list $ "gateway"). */}}
{{- define "modelserver.tracingEnv" -}}
{{- $root := index . 0 }}
{{- with $root.Values.tracing.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
- name: OTEL_SERVICE_NAME
  value: {{ printf "modelserver-%s" (index $ 1) | quote }}
{{- end }}
{{- end }}

{{/* Environment variables from a map, in a stable order. */}}
{{- define "modelserver.env" -}}
{{- range $name, $value := . }}
- name: {{ $name }}
  value: {{ toString $value | quote }}
{{- end }}
{{- end }}

{{/*
Every workload with its merged configuration, as JSON {"items": [...]}: name, component, kind
("inference", "gateway" or "nginx"), model (inference only), port, grpcPort (the container's) and config.
*/}}
{{- define "modelserver.workloads" -}}
{{- $items := list }}
{{- $defaults := omit .Values.inference "models" }}
{{- range $model, $overrides := .Values.inference.models }}
{{- $config := mergeOverwrite (deepCopy $defaults) (deepCopy (default dict $overrides)) }}
{{- $component := printf "inference-%s" $model }}
{{- $items = append $items (dict "name" (include "modelserver.componentName" (list $ $component)) "component" $component "kind" "inference" "model" $model "port" $config.service.port "grpcPort" $config.service.grpcPort "config" $config) }}
{{- end }}
{{- $items = append $items (dict "name" (include "modelserver.componentName" (list $ "gateway")) "component" "gateway" "kind" "gateway" "port" .Values.gateway.service.port "grpcPort" .Values.gateway.service.grpcPort "config" .Values.gateway) }}
{{- $items = append $items (dict "name" (include "modelserver.componentName" (list $ "nginx")) "component" "nginx" "kind" "nginx" "port" 8080 "grpcPort" 8500 "config" .Values.nginx) }}
{{- dict "items" $items | toJson }}
{{- end }}

{{/* The headless Service of a model, whose DNS name resolves to every ready pod's address. */}}
{{- define "modelserver.headlessName" -}}
{{- include "modelserver.componentName" (list (index . 0) (printf "inference-%s-headless" (index . 1))) }}
{{- end }}

{{/*
The pod template parts every Deployment shares. Call with (dict "root" $ "workload" $w
"containers" <yaml> "volumes" <yaml> "annotations" <dict> "grace" <seconds>).
*/}}
{{- define "modelserver.deployment" -}}
{{- $root := .root }}
{{- $w := .workload }}
{{- $config := $w.config }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $w.name }}
  labels:
    {{- include "modelserver.labels" (list $root $w.component) | nindent 4 }}
spec:
  {{- if not $config.autoscaling.enabled }}
  replicas: {{ $config.replicaCount }}
  {{- else }}
  {{- /* With an HPA: minReplicas on the first install (a Deployment without `replicas` starts
  with 1 until the HPA's first sync), and on upgrades the count the Deployment has now, so that
  neither a re-render nor Helm's three-way merge (a field dropped from the manifest is deleted,
  i.e. reset to 1) undoes what the HPA chose. */}}
  {{- $live := lookup "apps/v1" "Deployment" $root.Release.Namespace $w.name }}
  replicas: {{ dig "spec" "replicas" $config.autoscaling.minReplicas $live | int }}
  {{- end }}
  revisionHistoryLimit: 5
  minReadySeconds: {{ $config.minReadySeconds }}
  # A new pod must be ready before an old one goes: capacity never drops during a rollout.
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 0
      maxSurge: 1
  selector:
    matchLabels:
      {{- include "modelserver.selectorLabels" (list $root $w.component) | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "modelserver.podLabels" (list $root $w.component) | nindent 8 }}
      {{- $annotations := merge (dict) .annotations (deepCopy $config.podAnnotations) }}
      {{- with $annotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      serviceAccountName: {{ include "modelserver.serviceAccountName" $root }}
      automountServiceAccountToken: false
      # No Service environment variables: nothing reads them, and a Service whose name starts
      # with INFERENCE_ or GATEWAY_ would otherwise inject variables into the settings' prefix.
      enableServiceLinks: false
      securityContext:
        {{- toYaml (merge (dict) (deepCopy $config.podSecurityContext) (deepCopy $root.Values.podSecurityContext)) | nindent 8 }}
      terminationGracePeriodSeconds: {{ .grace }}
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        {{- .containers | nindent 8 }}
      volumes:
        # Writable scratch on a read-only root filesystem.
        - name: tmp
          emptyDir:
            sizeLimit: {{ $config.tmpSizeLimit }}
        {{- with .volumes }}
        {{- . | nindent 8 }}
        {{- end }}
      {{- with $config.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $config.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $config.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $config.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- range . }}
        - {{- toYaml (merge (dict) . (dict "labelSelector" (dict "matchLabels" (include "modelserver.selectorLabels" (list $root $w.component) | fromYaml)))) | nindent 10 }}
        {{- end }}
      {{- end }}
{{- end }}

{{/* A container's securityContext, resources, probes and preStop hook. Call with (dict "root" $ "config" $config "probes" <dict for modelserver.probes> "drain" <bool, see modelserver.preStop>). */}}
{{- define "modelserver.containerCommon" -}}
securityContext:
  {{- toYaml .root.Values.containerSecurityContext | nindent 2 }}
resources:
  {{- toYaml .config.resources | nindent 2 }}
{{ include "modelserver.probes" .probes }}
lifecycle:
  {{- include "modelserver.preStop" (dict "root" .root "drain" .drain) | nindent 2 }}
{{- end }}
