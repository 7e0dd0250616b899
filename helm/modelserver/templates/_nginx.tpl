{{/*
The values of the template's ${UPPER_CASE} placeholders (stack/nginx_config.PLACEHOLDERS).
The upstream is the gateway's ClusterIP Service (its http port; its grpc port for gRPC), listed four times (stack/nginx_config.py
UPSTREAM_COPIES): nginx resolves a name once at start, a ClusterIP never changes, and kube-proxy
picks a gateway pod per connection, so further entries give `proxy_next_upstream` retries that
will most likely reach another pod. nginx tries each entry at most once per request, and a
gateway worker killed under load leaves dead keep-alive connections that a retry can meet too:
with two entries 1 request in 600 still failed (docs/findings.md, "What fault injection found").
max_fails=0 because one address stands for all gateway pods: a failure of one pod must not
mark the whole Service down. max_conns shares nginx.maxInflight between the four entries.
*/}}
{{- define "modelserver.nginxPlaceholders" -}}
{{- $c := .Values.nginx }}
{{- $perEntry := div (add (int $c.maxInflight) 3) 4 }}
{{- $upstream := printf "server %s:%v max_fails=0 max_conns=%d;" (include "modelserver.componentName" (list . "gateway")) .Values.gateway.service.port $perEntry }}
{{- $grpcUpstream := printf "server %s:%v max_fails=0 max_conns=%d;" (include "modelserver.componentName" (list . "gateway")) .Values.gateway.service.grpcPort $perEntry }}
WORKER_PROCESSES: {{ $c.workerProcesses | quote }}
PID_FILE: /tmp/nginx.pid
ERROR_LOG: stderr
ACCESS_LOG: {{ ternary "/dev/stdout json" "off" $c.accessLog | quote }}
TEMP_DIR: /tmp
LISTEN: "8080"
GRPC_LISTEN: "8500"
GRPC_UPSTREAM_SERVERS: {{ printf "%s\n        %s\n        %s\n        %s" $grpcUpstream $grpcUpstream $grpcUpstream $grpcUpstream | quote }}
UPSTREAM_SERVERS: {{ printf "%s\n        %s\n        %s\n        %s" $upstream $upstream $upstream $upstream | quote }}
CLIENT_MAX_BODY_SIZE: {{ $c.clientMaxBodySize | quote }}
PROXY_READ_TIMEOUT: "{{ $c.proxyReadTimeoutSeconds }}s"
RATE_LIMIT: {{ $c.rateLimit | quote }}
RATE_BURST: {{ $c.rateBurst | quote }}
{{- /* Half the pause less a second: a busy connection opened just before the pod left the
endpoints is told `Connection: close` well within the pause (10 s -> 4 s). */}}
CLIENT_KEEPALIVE_TIME: "{{ max 1 (sub (div (int .Values.preStop.seconds) 2) 1) }}s"
{{- end }}

{{/* nginx.conf: the shared template with every placeholder replaced; a leftover one is an error. */}}
{{- define "modelserver.nginxConf" -}}
{{- $conf := .Files.Get "files/nginx.conf.template" }}
{{- range $name, $value := include "modelserver.nginxPlaceholders" . | fromYaml }}
{{- $conf = replace (printf "${%s}" $name) (toString $value) $conf }}
{{- end }}
{{- with regexFind "\\$\\{[A-Z][A-Z0-9_]*\\}" $conf }}
{{- fail (printf "files/nginx.conf.template has a placeholder the chart does not fill: %s" .) }}
{{- end }}
{{- $conf }}
{{- end }}

{{/* The nginx container. Call with (dict "root" $ "workload" $w). */}}
{{- define "modelserver.nginxContainer" -}}
{{- $root := .root }}
{{- $config := .workload.config -}}
- name: nginx
  image: "{{ $config.image.repository }}:{{ $config.image.tag }}"
  imagePullPolicy: {{ $config.image.pullPolicy }}
  # nginx itself, not the image's entrypoint scripts: they rewrite files under /etc/nginx,
  # which is read-only here. The image's STOPSIGNAL (SIGQUIT) makes the stop graceful.
  command: ["nginx", "-g", "daemon off;"]
  ports:
    - name: http
      containerPort: 8080
      protocol: TCP
    - name: grpc
      containerPort: 8500
      protocol: TCP
  volumeMounts:
    - name: tmp
      mountPath: /tmp
    - name: config
      mountPath: /etc/nginx/nginx.conf
      subPath: nginx.conf
      readOnly: true
  {{- include "modelserver.containerCommon" (dict "root" $root "config" $config "probes" (dict "port" "http" "ready" "/nginx-healthz" "live" "/nginx-healthz" "timing" $config.probes) "drain" false) | nindent 2 }}
{{- end }}
