{{- define "conveyor.name" -}}conveyor{{- end -}}
{{- define "conveyor.fullname" -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- define "conveyor.labels" -}}
app.kubernetes.io/name: conveyor
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
{{- define "conveyor.selector" -}}
app.kubernetes.io/name: conveyor
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- define "conveyor.serviceAccount" -}}
{{- if .Values.serviceAccount.create -}}{{ default (include "conveyor.fullname" .) .Values.serviceAccount.name }}{{- else -}}{{ required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}{{- end -}}
{{- end -}}
{{- define "conveyor.image" -}}
{{- if .Values.image.digest -}}{{ .Values.image.repository }}@{{ .Values.image.digest }}{{- else -}}{{ .Values.image.repository }}:{{ .Values.image.tag }}{{- end -}}
{{- end -}}
{{- /* The in-cluster dashboard (values `ui`): its own name and labels — app.kubernetes.io/name
conveyor-ui, so the operator's selector (name conveyor) never matches its Pods: not its Deployment,
not the metrics Service, not the PodDisruptionBudget. */ -}}
{{- define "conveyor.ui.name" -}}{{ printf "%s-ui" (.Release.Name | trunc 60 | trimSuffix "-") }}{{- end -}}
{{- define "conveyor.ui.selector" -}}
app.kubernetes.io/name: conveyor-ui
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- define "conveyor.ui.labels" -}}
{{ include "conveyor.ui.selector" . }}
app.kubernetes.io/component: dashboard
app.kubernetes.io/part-of: conveyor
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
{{- /* The label that admits a Pod of the release namespace to the dashboard's port (its
NetworkPolicy): put it on the authenticating proxy's Pods. */ -}}
{{- define "conveyor.ui.clientLabel" -}}
conveyor.dev/dashboard-client: "true"
{{- end -}}
{{- /* The Host header values the dashboard answers to (its --allowed-host flags): the Service's DNS
names with the Service port (bare too on port 80, as a browser sends it), the ingress host, and
ui.allowedHosts as given. One per line. */ -}}
{{- define "conveyor.ui.allowedHosts" -}}
{{- $name := include "conveyor.ui.name" . -}}
{{- $port := int .Values.ui.service.port -}}
{{- $hosts := list -}}
{{- range list $name (printf "%s.%s" $name .Release.Namespace) (printf "%s.%s.svc" $name .Release.Namespace) (printf "%s.%s.svc.cluster.local" $name .Release.Namespace) -}}
{{- $hosts = append $hosts (printf "%s:%d" . $port) -}}
{{- if eq $port 80 }}{{ $hosts = append $hosts . }}{{ end -}}
{{- end -}}
{{- if and .Values.ui.ingress.enabled .Values.ui.ingress.host -}}
{{- $hosts = append $hosts .Values.ui.ingress.host -}}
{{- end -}}
{{- $hosts = concat $hosts .Values.ui.allowedHosts -}}
{{- join "\n" (uniq $hosts) -}}
{{- end -}}
{{- /* Where the operator reads cluster Secrets (clusters.*): clusters.secretNamespace, else the
release namespace. */ -}}
{{- define "conveyor.clusterSecretNamespace" -}}{{ .Values.clusters.secretNamespace | default .Release.Namespace }}{{- end -}}
