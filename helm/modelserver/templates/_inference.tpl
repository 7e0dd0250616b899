{{/* The inference container. Call with (dict "root" $ "workload" $w "tfThreads" n). */}}
{{- define "modelserver.inferenceContainer" -}}
{{- $root := .root }}
{{- $config := .workload.config -}}
- name: inference
  image: {{ include "modelserver.imageRef" (list $root $config.image) }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  args: ["inference"]
  ports:
    - name: http
      containerPort: 8080
      protocol: TCP
    - name: grpc
      containerPort: {{ $config.service.grpcPort }}
      protocol: TCP
  env:
    # Every interface: the service's default (127.0.0.1) is for one machine.
    - name: INFERENCE_BIND
      value: "0.0.0.0:8080"
    # gRPC on every worker; /readyz names the port, and the gateway calls it there.
    - name: INFERENCE_GRPC_BIND
      value: "0.0.0.0:{{ $config.service.grpcPort }}"
    - name: INFERENCE_MODEL_ROOT
      value: {{ $config.modelRoot | quote }}
    {{- if $config.modelConfig }}
    # TF Serving's model config file, from the ConfigMap (modelserver.modelConfigMap).
    - name: INFERENCE_MODEL_CONFIG_FILE
      value: {{ include "modelserver.modelConfigFile" . }}
    {{- end }}
    - name: INFERENCE_WORKERS
      value: {{ $config.workers | quote }}
    - name: INFERENCE_THREADS
      value: {{ $config.threads | quote }}
    # From the CPU limit, not the node's CPUs: TensorFlow cannot see the limit.
    - name: INFERENCE_TF_THREADS
      value: {{ .tfThreads | quote }}
    - name: OMP_NUM_THREADS
      value: {{ .tfThreads | quote }}
    - name: INFERENCE_TIMEOUT
      value: {{ $config.timeout | quote }}
    - name: INFERENCE_GRACEFUL_TIMEOUT
      value: {{ $config.gracefulTimeout | quote }}
    - name: INFERENCE_KEEPALIVE
      value: {{ $config.keepalive | quote }}
    # Triton's load/unload: only from the gateway (the network policies let nothing else in),
    # and only with modelControl on; off, the pods refuse it whoever asks.
    - name: INFERENCE_REPOSITORY_CONTROL
      value: {{ ternary "on" "off" $root.Values.modelControl.enabled | quote }}
    # Created by the preStop hook: the pod announces its drain (modelserver.preStop).
    - name: INFERENCE_DRAIN_FILE
      value: {{ include "modelserver.drainFile" $root }}
    {{- include "modelserver.tracingEnv" (list $root "inference") | nindent 4 }}
    {{- with $config.env }}
    {{- include "modelserver.env" . | nindent 4 }}
    {{- end }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
    - name: shm
      mountPath: /dev/shm
    {{- if $config.modelVolume }}
    - name: models
      mountPath: {{ $config.modelRoot }}
      readOnly: true
    {{- end }}
    {{- if $config.modelConfig }}
    # The directory, not a subPath: a ConfigMap edit reaches a directory mount, never a subPath.
    - name: model-config
      mountPath: {{ include "modelserver.modelConfigDir" . }}
      readOnly: true
    {{- end }}
  {{- include "modelserver.containerCommon" (dict "root" $root "config" $config "probes" (dict "port" "http" "ready" "/readyz" "live" "/healthz" "timing" $config.probes) "drain" true) | nindent 2 }}
{{- end }}

{{/* Where the model config file is mounted, and its path (INFERENCE_MODEL_CONFIG_FILE). */}}
{{- define "modelserver.modelConfigDir" -}}
/etc/modelserver/model-config
{{- end }}
{{- define "modelserver.modelConfigFile" -}}
{{ include "modelserver.modelConfigDir" . }}/models.config
{{- end }}
{{- define "modelserver.modelConfigMap" -}}
{{- printf "%s-model-config" .name }}
{{- end }}
