{{/*
The gateway's routes file: each model's headless Service (one DNS name for all its ready pods)
and, with canary on, the weights of its versions. Short Service names resolve through the pod's
DNS search path, so the same file works in any namespace.
*/}}
{{- define "modelserver.routes" -}}
{{- $models := dict }}
{{- range $model, $overrides := .Values.inference.models }}
{{- $config := mergeOverwrite (deepCopy (omit $.Values.inference "models")) (deepCopy (default dict $overrides)) }}
{{- $route := dict "backends" (list (printf "%s:%v" (include "modelserver.headlessName" (list $ $model)) $config.service.port)) }}
{{- if $config.canary.enabled }}
{{- if and $config.canary.weights $config.canary.labels }}
{{- fail (printf "inference.models.%s.canary: give weights (versions) or labels, not both" $model) }}
{{- else if $config.canary.labels }}
{{- $_ := set $route "labels" $config.canary.labels }}
{{- else if $config.canary.weights }}
{{- $_ := set $route "versions" $config.canary.weights }}
{{- else }}
{{- fail (printf "inference.models.%s.canary.enabled needs canary.weights, e.g. {\"1\": 90, \"2\": 10}, or canary.labels" $model) }}
{{- end }}
{{- end }}
{{- $_ := set $models $model $route }}
{{- end }}
{{- toYaml (dict "models" $models) }}
{{- end }}

{{- define "modelserver.apiKeysSecretName" -}}
{{- default (include "modelserver.componentName" (list . "api-keys")) .Values.gateway.apiKeys.existingSecret }}
{{- end }}

{{/* The keys file of the Secret the chart creates: one key per line. */}}
{{- define "modelserver.apiKeysFile" -}}
{{- $keys := .Values.gateway.apiKeys.keys }}
{{- if not $keys }}
{{- fail "gateway.apiKeys.enabled needs gateway.apiKeys.existingSecret (preferred) or gateway.apiKeys.keys" }}
{{- end }}
{{- printf "%s\n" (join "\n" $keys) }}
{{- end }}

{{- define "modelserver.adminKeysSecretName" -}}
{{- default (include "modelserver.componentName" (list . "admin-keys")) .Values.modelControl.existingSecret }}
{{- end }}

{{/* The admin keys file of the Secret the chart creates; model control needs the network
policies, or the inference pods would take load/unload from anyone in the cluster. */}}
{{- define "modelserver.adminKeysFile" -}}
{{- if not .Values.networkPolicy.enabled }}
{{- fail "modelControl.enabled needs networkPolicy.enabled: the inference pods take load/unload from whoever reaches them" }}
{{- end }}
{{- $keys := .Values.modelControl.keys }}
{{- if not $keys }}
{{- fail "modelControl.enabled needs modelControl.existingSecret (preferred) or modelControl.keys" }}
{{- end }}
{{- range $keys }}
{{- if has . $.Values.gateway.apiKeys.keys }}
{{- fail "modelControl.keys and gateway.apiKeys.keys share a key: an admin key must be its own" }}
{{- end }}
{{- end }}
{{- printf "%s\n" (join "\n" $keys) }}
{{- end }}

{{/* The gateway container. Call with (dict "root" $ "workload" $w). */}}
{{- define "modelserver.gatewayContainer" -}}
{{- $root := .root }}
{{- $config := .workload.config -}}
- name: gateway
  image: {{ include "modelserver.imageRef" (list $root dict) }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  args: ["gateway"]
  ports:
    - name: http
      containerPort: {{ $config.service.port }}
      protocol: TCP
    - name: grpc
      containerPort: {{ $config.service.grpcPort }}
      protocol: TCP
  env:
    - name: GATEWAY_BIND
      value: "0.0.0.0:{{ $config.service.port }}"
    - name: GATEWAY_GRPC_BIND
      value: "0.0.0.0:{{ $config.service.grpcPort }}"
    - name: GATEWAY_ROUTES_FILE
      value: /etc/modelserver/routes/routes.yaml
    {{- if $config.apiKeys.enabled }}
    - name: GATEWAY_API_KEYS_FILE
      value: /etc/modelserver/api-keys/{{ $config.apiKeys.secretKey }}
    {{- end }}
    {{- if $root.Values.modelControl.enabled }}
    - name: GATEWAY_ADMIN_KEYS_FILE
      value: /etc/modelserver/admin-keys/{{ $root.Values.modelControl.secretKey }}
    {{- end }}
    - name: GATEWAY_WORKERS
      value: {{ $config.workers | quote }}
    - name: GATEWAY_THREADS
      value: {{ $config.threads | quote }}
    - name: GATEWAY_TIMEOUT
      value: {{ $config.timeout | quote }}
    - name: GATEWAY_GRACEFUL_TIMEOUT
      value: {{ $config.gracefulTimeout | quote }}
    - name: GATEWAY_KEEPALIVE
      value: {{ $config.keepalive | quote }}
    # Created by the preStop hook: the pod announces its drain (modelserver.preStop).
    - name: GATEWAY_DRAIN_FILE
      value: {{ include "modelserver.drainFile" $root }}
    # nginx logs every request already (nginx.accessLog); this is the gateway's own line.
    - name: GATEWAY_ACCESS_LOG
      value: {{ $config.accessLog | quote }}
    {{- include "modelserver.tracingEnv" (list $root "gateway") | nindent 4 }}
    # The live status page, without a key; nginx never proxies it (files/nginx.conf.template).
    - name: GATEWAY_STATUS_PAGE
      value: {{ $config.statusPage | quote }}
    {{- with $config.env }}
    {{- include "modelserver.env" . | nindent 4 }}
    {{- end }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
    - name: shm
      mountPath: /dev/shm
    - name: routes
      mountPath: /etc/modelserver/routes
      readOnly: true
    {{- if $config.apiKeys.enabled }}
    - name: api-keys
      mountPath: /etc/modelserver/api-keys
      readOnly: true
    {{- end }}
    {{- if $root.Values.modelControl.enabled }}
    - name: admin-keys
      mountPath: /etc/modelserver/admin-keys
      readOnly: true
    {{- end }}
  {{- include "modelserver.containerCommon" (dict "root" $root "config" $config "probes" (dict "port" "http" "ready" "/readyz" "live" "/healthz" "grpcReady" $config.service.grpcPort "timing" $config.probes) "drain" true) | nindent 2 }}
{{- end }}
