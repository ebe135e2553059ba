{{- define "kstudio.labels" -}}
app.kubernetes.io/name: kstudio
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "kstudio.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- /* Cluster-scoped objects (ClusterRole, ClusterRoleBinding) are named after the release and its
namespace, so two releases (e.g. one per namespace) never fight over one role. Not truncated: these names are
not DNS labels (up to 253 characters), and a release name (<= 53) plus a namespace (<= 63) always fit. */ -}}
{{- define "kstudio.clusterScopedName" -}}
{{ printf "%s-%s-operator" .Release.Name .Release.Namespace }}
{{- end -}}

{{- define "kstudio.consoleClusterScopedName" -}}
{{ printf "%s-%s-console" .Release.Name .Release.Namespace }}
{{- end -}}
