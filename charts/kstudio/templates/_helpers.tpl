{{- define "kstudio.labels" -}}
app.kubernetes.io/name: kstudio
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "kstudio.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}
