{{/* Names and labels shared by every object of the release. */}}
{{- define "eomatch.fullname" -}}
{{- printf "%s-eomatch" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "eomatch.labels" -}}
app.kubernetes.io/name: eomatch
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "eomatch.secretName" -}}
{{- default (printf "%s-secrets" (include "eomatch.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* libpq variables for the primary, as `role` with the password under `key`. */}}
{{- define "eomatch.pgEnv" -}}
- name: PGHOST
  value: {{ .root.Values.database.host | quote }}
- name: PGPORT
  value: {{ .root.Values.database.port | quote }}
- name: PGDATABASE
  value: {{ .root.Values.database.name | quote }}
- name: PGUSER
  value: {{ .role | quote }}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "eomatch.secretName" .root }}
      key: {{ .key }}
{{- end -}}

{{/* Pod and container hardening (the images run as uid 10001). */}}
{{- define "eomatch.podSecurity" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "eomatch.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}
