{{/*
Rules of this chart:
- with default values and --namespace kubegate it renders deploy/base object for object
  (tests/integration/test_helm_chart.py compares them): change both, or neither;
- namespaced objects keep the base's names (one release per namespace); cluster-scoped ones
  carry the namespace in their name unless it is `kubegate`, so installs in two namespaces
  never share (or overwrite) a ClusterRoleBinding or an admission policy;
- the exchanger's hardening and RBAC are not values.
*/}}

{{- define "kubegate.namespace" -}}
{{- if and .Values.namespace.create (has .Release.Namespace (list "default" "kube-system" "kube-public" "kube-node-lease")) -}}
{{- fail (printf "kubegate: namespace.create would take over namespace %s: install with --namespace kubegate (or set namespace.create=false)" .Release.Namespace) -}}
{{- end -}}
{{- .Release.Namespace -}}
{{- end -}}

{{/* A cluster-scoped object's name: (list $ "exchanger-tokenreview") */}}
{{- define "kubegate.clusterScopedName" -}}
{{- $root := index . 0 -}}
{{- if eq $root.Release.Namespace "kubegate" -}}
kubegate-{{ index . 1 }}
{{- else -}}
kubegate-{{ $root.Release.Namespace }}-{{ index . 1 }}
{{- end -}}
{{- end -}}

{{- define "kubegate.serviceAccountUser" -}}
system:serviceaccount:{{ include "kubegate.namespace" . }}:kubegate-exchanger
{{- end -}}

{{/* Labels of every object: (list $ "component"), component "" for none. */}}
{{- define "kubegate.labels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: kubegate
{{- with index . 1 }}
app.kubernetes.io/component: {{ . }}
{{- end }}
app.kubernetes.io/part-of: kubegate
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" $root.Chart.Name $root.Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "kubegate.selectorLabels" -}}
app.kubernetes.io/name: kubegate
app.kubernetes.io/component: exchanger
{{- end -}}

{{- define "kubegate.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ $tag }}
{{- end -}}
{{- end -}}

{{- define "kubegate.mappingNamespace" -}}
{{- .Values.mappingSources.cluster.namespace | default (include "kubegate.namespace" .) -}}
{{- end -}}

{{- define "kubegate.auditLogOnClaim" -}}
{{- if .Values.auditLog.persistentVolumeClaim }}true{{ end -}}
{{- end -}}

{{/* The config file `kubegate serve --config` reads, as YAML. */}}
{{- define "kubegate.config" -}}
{{- $namespace := include "kubegate.namespace" . -}}
{{- $config := dict
      "listen" "0.0.0.0:8443"
      "tls" (dict "certFile" "/etc/kubegate/tls/tls.crt" "keyFile" "/etc/kubegate/tls/tls.key")
      "healthListen" "0.0.0.0:8081"
      "metricsListen" "0.0.0.0:9090"
      "workers" (int .Values.workers)
      "stateDir" "/var/lib/kubegate"
      "auditLog" "/var/lib/kubegate/audit.log"
      "issuers" .Values.issuers
      "clusters" .Values.clusters -}}
{{- if include "kubegate.auditLogOnClaim" . -}}
{{- $_ := set $config "auditLog" "/var/log/kubegate/audit.log" -}}
{{- end -}}
{{- $checkpoints := .Values.audit.checkpoints -}}
{{- if $checkpoints.enabled -}}
{{- $section := dict
      "key" "/etc/kubegate/audit-key/key.pem"
      "interval" $checkpoints.interval
      "configMap" (dict "cluster" $checkpoints.cluster "namespace" $namespace "name" "kubegate-audit-checkpoints") -}}
{{- with $checkpoints.keyName }}{{ $_ := set $section "keyName" . }}{{ end -}}
{{- with $checkpoints.witness }}{{ $_ := set $section "witness" . }}{{ end -}}
{{- $_ := set $config "audit" (dict "checkpoints" $section) -}}
{{- end -}}
{{- $sources := dict "files" .Values.mappingSources.files -}}
{{- with .Values.mappingSources.cluster -}}
{{- $_ := set $sources "cluster" (dict "name" .name "namespace" (include "kubegate.mappingNamespace" $)) -}}
{{- if ne (include "kubegate.mappingNamespace" $) $namespace -}}
{{- /* access requests and sessions stay where the chart's Role lets the exchanger write */ -}}
{{- $_ := set $config "access" (dict "cluster" (dict "name" .name "namespace" $namespace)) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $config "mappingSources" $sources -}}
{{- if .Values.mappingSources.files -}}
{{- $_ := set $config "mappings" "/etc/kubegate/mappings" -}}
{{- end -}}
{{- range $key, $value := .Values.config -}}
{{- if hasKey $config $key -}}
{{- fail (printf "kubegate: config.%s is set by the chart (use its own value, see values.yaml)" $key) -}}
{{- end -}}
{{- $_ := set $config $key $value -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}
