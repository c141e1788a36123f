{{/*
The gateway's helpers (values `gateway.*`; README "Gateway"). With gateway.enabled=true and
--namespace kubegate the chart adds deploy/base/gateway object for object
(tests/integration/test_helm_chart.py compares them).
*/}}

{{- define "kubegate.gatewaySelectorLabels" -}}
app.kubernetes.io/name: kubegate
app.kubernetes.io/component: gateway
{{- end -}}

{{/* The gateway's config file: the exchanger's (kubegate.config) plus the gateway section. */}}
{{- define "kubegate.gatewayConfig" -}}
{{- $config := include "kubegate.config" . | fromYaml -}}
{{- $section := dict
      "listen" "0.0.0.0:8443"
      "tls" (dict "certFile" "/etc/kubegate/gateway-tls/tls.crt" "keyFile" "/etc/kubegate/gateway-tls/tls.key")
      "cluster" .Values.gateway.cluster
      "recordings" "/var/lib/kubegate/recordings"
      "audit" (dict "path" "/var/lib/kubegate/gateway-audit.log")
      "maxConnections" (int .Values.gateway.maxConnections)
      "metricsListen" (printf "0.0.0.0:%d" (int .Values.gateway.metricsPort)) -}}
{{- $_ := set $config "gateway" $section -}}
{{- toYaml $config -}}
{{- end -}}

{{- define "kubegate.gatewayRecordingsOnClaim" -}}
{{- if .Values.gateway.recordings.persistentVolumeClaim }}true{{ end -}}
{{- end -}}
