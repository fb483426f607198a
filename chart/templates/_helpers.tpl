{{/*
The chart name, or nameOverride.
*/}}
{{- define "s32s3.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object name: fullnameOverride, else "<release>-<name>", else the release name alone when it
already contains the name. Truncated to 63 characters (DNS label).
*/}}
{{- define "s32s3.fullname" -}}
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
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "s32s3.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object.
*/}}
{{- define "s32s3.labels" -}}
helm.sh/chart: {{ include "s32s3.chart" . }}
{{ include "s32s3.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Labels that identify the release's pods.
*/}}
{{- define "s32s3.selectorLabels" -}}
app.kubernetes.io/name: {{ include "s32s3.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The image reference; the tag defaults to the chart's appVersion.
*/}}
{{- define "s32s3.image" -}}
{{- printf "%s:%s" .Values.image.name (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
A scalar as an environment variable value. Helm reads every number in values as a float64, which would print
67108864 as "6.7108864e+07": whole numbers are printed as integers.
*/}}
{{- define "s32s3.scalar" -}}
{{- if and (kindIs "float64" .) (eq (float64 (int64 .)) .) }}
{{- int64 . }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}

{{/*
One environment variable from a value in one of the forms
  {}                          -> left out (rendered as "{}")
  {value: x}                  -> value: "x"
  {valueFrom: {...}}          -> valueFrom: {...}
  x (scalar; only where the 4th argument is true) -> value: "x"
Arguments: (list <values path, for messages> <variable name> <value> <scalar allowed>).
Renders the EnvVar as JSON, for the caller to fromJson.
*/}}
{{- define "s32s3.envVar" -}}
{{- $path := index . 0 }}
{{- $name := index . 1 }}
{{- $v := index . 2 }}
{{- $scalarOk := index . 3 }}
{{- if or (kindIs "invalid" $v) (and (kindIs "map" $v) (empty $v)) }}
{{- dict | toJson }}
{{- else if kindIs "map" $v }}
{{- if and (hasKey $v "value") (hasKey $v "valueFrom") }}
{{- fail (printf "%s: give either value or valueFrom, not both" $path) }}
{{- else if hasKey $v "value" }}
{{- if or (kindIs "invalid" $v.value) (kindIs "map" $v.value) (kindIs "slice" $v.value) }}
{{- fail (printf "%s.value must be a string, number or boolean" $path) }}
{{- end }}
{{- dict "name" $name "value" (include "s32s3.scalar" $v.value) | toJson }}
{{- else if hasKey $v "valueFrom" }}
{{- if not (kindIs "map" $v.valueFrom) }}
{{- fail (printf "%s.valueFrom must be an EnvVarSource such as {secretKeyRef: {name: …, key: …}}" $path) }}
{{- end }}
{{- dict "name" $name "valueFrom" $v.valueFrom | toJson }}
{{- else }}
{{- fail (printf "%s: expected {value: …} or {valueFrom: …}, got keys %s" $path (keys $v | sortAlpha | join ", ")) }}
{{- end }}
{{- else if and $scalarOk (or (kindIs "string" $v) (kindIs "float64" $v) (kindIs "int64" $v) (kindIs "int" $v) (kindIs "bool" $v)) }}
{{- dict "name" $name "value" (include "s32s3.scalar" $v) | toJson }}
{{- else }}
{{- fail (printf "%s: expected {value: …} or {valueFrom: …}, got %s" $path (kindOf $v)) }}
{{- end }}
{{- end }}

{{/*
rclone option names (config.rclone, with "-" or "_") -> s32s3 environment variables.
*/}}
{{- define "s32s3.rcloneEnv" -}}
transfers: S32S3_TRANSFERS
checkers: S32S3_CHECKERS
bwlimit: S32S3_BWLIMIT
s3-upload-cutoff: S32S3_MULTIPART_THRESHOLD
s3-chunk-size: S32S3_PART_SIZE
s3-upload-concurrency: S32S3_PART_CONCURRENCY
retries: S32S3_RETRIES
max-delete: S32S3_MAX_DELETE
log-level: S32S3_LOG_LEVEL
{{- end }}

{{/*
backup.shards as an integer (Helm reads the numbers of a values file as float64): the pods of each backup run.
*/}}
{{- define "s32s3.shards" -}}
{{- int64 ((.Values.backup | default dict).shards | default 1) }}
{{- end }}

{{/*
The container's environment, in a fixed order: log format, source, destination, crypt, backup settings, the
component's own (the daemon's listen address, the backup's Pushgateway and shard), tuning (config.rclone), then
config.extraEnv (last, so it may refer to the others with $(NAME)). A variable set twice fails the render,
except S32S3_LOG_FORMAT, which config.extraEnv may override. Settings left empty are left out, so a release that
does not use them renders as it did before they existed.
Arguments: (dict "root" $ "component" "backup"|"daemon"|"restore").
*/}}
{{- define "s32s3.env" -}}
{{- $root := .root }}
{{- $cfg := $root.Values.config }}
{{- $metrics := $root.Values.metrics | default dict }}
{{- $extra := $cfg.extraEnv | default dict }}
{{- $env := list }}
{{- $seen := dict }}
{{- if not (hasKey $extra "S32S3_LOG_FORMAT") }}
{{- $env = append $env (dict "name" "S32S3_LOG_FORMAT" "value" "json") }}
{{- end }}
{{- $vars := list }}
{{- range $section := list "source" "destination" }}
{{- $values := index $cfg $section | default dict }}
{{- range $key := list "endpoint" "access_key_id" "secret_access_key" "region" "provider" }}
{{- $vars = append $vars (list (printf "config.%s.%s" $section $key) (printf "S32S3_%s_%s" (upper $section) (upper $key)) (index $values $key) false) }}
{{- end }}
{{- end }}
{{- $crypt := $cfg.crypt | default dict }}
{{- $vars = append $vars (list "config.crypt.password" "S32S3_CRYPT_PASSWORD" $crypt.password false) }}
{{- $vars = append $vars (list "config.crypt.password2" "S32S3_CRYPT_PASSWORD2" $crypt.password2 false) }}
{{- $vars = append $vars (list "config.backupBucket" "S32S3_BACKUP_BUCKET" $cfg.backupBucket true) }}
{{- $vars = append $vars (list "config.expirationDays" "S32S3_EXPIRATION_DAYS" $cfg.expirationDays true) }}
{{- $vars = append $vars (list "config.schedule" "S32S3_SCHEDULE" $cfg.schedule true) }}
{{- if $cfg.verifySchedule }}
{{- $vars = append $vars (list "config.verifySchedule" "S32S3_VERIFY_SCHEDULE" $cfg.verifySchedule true) }}
{{- end }}
{{- if $cfg.verifyReadDataSubset }}
{{- $vars = append $vars (list "config.verifyReadDataSubset" "S32S3_VERIFY_READ_DATA_SUBSET" $cfg.verifyReadDataSubset true) }}
{{- end }}
{{- if eq .component "daemon" }}
{{- $vars = append $vars (list "metrics.port" "S32S3_LISTEN" (printf "0.0.0.0:%s" (include "s32s3.scalar" $metrics.port)) true) }}
{{- end }}
{{- $pushgateway := ($metrics.pushgateway | default dict).url }}
{{- if and (eq .component "backup") $pushgateway }}
{{- $vars = append $vars (list "metrics.pushgateway.url" "S32S3_PUSHGATEWAY" $pushgateway true) }}
{{- end }}
{{- $shards := include "s32s3.shards" $root | int64 }}
{{- if and (eq .component "backup") (gt $shards 1) }}
{{- /* Kubernetes sets JOB_COMPLETION_INDEX itself, but after the others, where $(JOB_COMPLETION_INDEX) would not
expand: declared here, before S32S3_SHARD, it is used as it is (the Job controller adds none then). */}}
{{- $index := dict "fieldRef" (dict "fieldPath" "metadata.annotations['batch.kubernetes.io/job-completion-index']") }}
{{- $vars = append $vars (list "backup.shards" "JOB_COMPLETION_INDEX" (dict "valueFrom" $index) false) }}
{{- $vars = append $vars (list "backup.shards" "S32S3_SHARD" (printf "$(JOB_COMPLETION_INDEX)/%d" $shards) true) }}
{{- /* The Job's name: one per run, the same for all its pods and their retries (the label is set since 1.27). */}}
{{- $job := dict "fieldRef" (dict "fieldPath" "metadata.labels['batch.kubernetes.io/job-name']") }}
{{- $vars = append $vars (list "backup.shards" "S32S3_RUN_ID" (dict "valueFrom" $job) false) }}
{{- end }}
{{- $rcloneEnv := include "s32s3.rcloneEnv" $root | fromYaml }}
{{- range $key, $v := $cfg.rclone }}
{{- $option := $key | replace "_" "-" }}
{{- if not (hasKey $rcloneEnv $option) }}
{{- fail (printf "config.rclone.%s: unknown option; s32s3 understands %s" $key (keys $rcloneEnv | sortAlpha | join ", ")) }}
{{- end }}
{{- $vars = append $vars (list (printf "config.rclone.%s" $key) (get $rcloneEnv $option) $v true) }}
{{- end }}
{{- range $name, $v := $extra }}
{{- $vars = append $vars (list (printf "config.extraEnv.%s" $name) $name $v true) }}
{{- end }}
{{- range $var := $vars }}
{{- $entry := include "s32s3.envVar" $var | fromJson }}
{{- if hasKey $entry "name" }}
{{- if hasKey $seen $entry.name }}
{{- fail (printf "%s: %s is already set by %s; set it in one place only" (index $var 0) $entry.name (get $seen $entry.name)) }}
{{- end }}
{{- $_ := set $seen $entry.name (index $var 0) }}
{{- $env = append $env $entry }}
{{- end }}
{{- end }}
{{- toYaml $env }}
{{- end }}

{{/*
The pod security context: podSecurityContext merged key by key over a default that passes the "restricted" Pod
Security Standard (the image runs as 65532, distroless's nonroot user). A key set to null is dropped.
*/}}
{{- define "s32s3.podSecurityContext" -}}
{{- $ctx := dict "runAsNonRoot" true "runAsUser" 65532 "runAsGroup" 65532 "seccompProfile" (dict "type" "RuntimeDefault") }}
{{- range $key, $v := .Values.podSecurityContext | default dict }}
{{- if kindIs "invalid" $v }}
{{- $_ := unset $ctx $key }}
{{- else }}
{{- $_ := set $ctx $key $v }}
{{- end }}
{{- end }}
{{- toYaml $ctx }}
{{- end }}

{{/*
The pod template shared by the backup CronJob, the restore Job and the daemon's Deployment.
Arguments: (dict "root" $ "component" "backup"|"restore"|"daemon" "args" <container args>
  ["restartPolicy" <Never (the default, for Jobs) or Always (a Deployment)>]
  ["metricsPort" <port of /metrics and /healthz: the container declares it and is probed on it>]).
*/}}
{{- define "s32s3.podTemplate" -}}
{{- $root := .root }}
{{- with $root -}}
metadata:
  labels:
    {{- include "s32s3.selectorLabels" . | nindent 4 }}
    app.kubernetes.io/component: {{ $.component }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  restartPolicy: {{ $.restartPolicy | default "Never" }}
  # s32s3 talks to S3 endpoints only, never to the Kubernetes API.
  automountServiceAccountToken: false
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- range . }}
    - {{ if kindIs "string" . }}{{ dict "name" . | toJson }}{{ else }}{{ toJson . }}{{ end }}
    {{- end }}
  {{- end }}
  securityContext:
    {{- include "s32s3.podSecurityContext" . | nindent 4 }}
  containers:
    - name: s32s3
      image: {{ include "s32s3.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        {{- toYaml $.args | nindent 8 }}
      env:
        {{- include "s32s3.env" (dict "root" . "component" $.component) | nindent 8 }}
      {{- with $.metricsPort }}
      ports:
        - name: metrics
          containerPort: {{ include "s32s3.scalar" . }}
          protocol: TCP
      # /healthz answers as soon as the daemon listens, also while a backup runs. Liveness is lenient: a
      # restart stops a running backup, which the next scheduled run resumes from its checkpoint.
      livenessProbe:
        httpGet:
          path: /healthz
          port: metrics
        periodSeconds: 20
        timeoutSeconds: 5
        failureThreshold: 6
      readinessProbe:
        httpGet:
          path: /healthz
          port: metrics
        periodSeconds: 10
        timeoutSeconds: 5
      {{- end }}
      {{- with .Values.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        capabilities:
          drop: [ALL]
      volumeMounts:
        # The root filesystem is read-only; /tmp is the only writable place.
        - name: tmp
          mountPath: /tmp
  volumes:
    - name: tmp
      emptyDir: {}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end }}

{{/*
Job-level settings shared by the backup and the restore: exit code 2 (usage: a configuration error) fails the
Job at once, since a retry cannot fix it; other failures are retried (backup and restore both resume).
*/}}
{{- define "s32s3.podFailurePolicy" -}}
podFailurePolicy:
  rules:
    - action: FailJob
      onExitCodes:
        containerName: s32s3
        operator: In
        values: [2]
{{- end }}

{{/*
The backup CronJob's name: 52 characters at most, since the controller appends an 11-character suffix to the
name of each Job it creates.
*/}}
{{- define "s32s3.backupName" -}}
{{- printf "%s-backup" (include "s32s3.fullname" . | trunc 45 | trimSuffix "-") }}
{{- end }}

{{/*
Names of the daemon-mode objects, 63 characters at most like the others (a Service's name is a DNS label).
*/}}
{{- define "s32s3.daemonName" -}}
{{- printf "%s-daemon" (include "s32s3.fullname" . | trunc 56 | trimSuffix "-") }}
{{- end }}

{{- define "s32s3.metricsServiceName" -}}
{{- printf "%s-metrics" (include "s32s3.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}

{{/*
Labels that pick the daemon's pods: the Deployment's selector and the Service's; the Service carries them too,
so the ServiceMonitor selects it with the same set.
*/}}
{{- define "s32s3.daemonSelectorLabels" -}}
{{ include "s32s3.selectorLabels" . }}
app.kubernetes.io/component: daemon
{{- end }}

{{/*
The label matchers of the PrometheusRule's expressions: metrics.prometheusRule.selector, or this release's
series as they are scraped: from the daemon's Service (Prometheus names the job after the Service), or from the
Pushgateway, where s32s3 backup pushes under job="s32s3".
*/}}
{{- define "s32s3.ruleSelector" -}}
{{- $rule := .Values.metrics.prometheusRule }}
{{- if $rule.selector }}
{{- $rule.selector }}
{{- else if eq .Values.mode "daemon" }}
{{- printf "namespace=%s, job=%s" (.Release.Namespace | quote) (include "s32s3.metricsServiceName" . | quote) }}
{{- else }}
{{- print "job=\"s32s3\"" }}
{{- end }}
{{- end }}

{{/*
Combinations that would render something that cannot work, or silently do nothing: each fails the render with
the reason and the way out. The schema has already checked each value on its own.
*/}}
{{- define "s32s3.validate" -}}
{{- $mode := .Values.mode }}
{{- $metrics := .Values.metrics }}
{{- $cfg := .Values.config }}
{{- if not (has $mode (list "cronjob" "daemon")) }}
{{- fail (printf "mode: %q is neither cronjob nor daemon" (toString $mode)) }}
{{- end }}
{{- if and (eq $mode "cronjob") $metrics.serviceMonitor.enabled }}
{{- fail "metrics.serviceMonitor.enabled needs mode=daemon: in cronjob mode no Service serves /metrics; set metrics.pushgateway.url to push each run's metrics to a Pushgateway instead" }}
{{- end }}
{{- if and (eq $mode "daemon") $metrics.pushgateway.url }}
{{- fail "metrics.pushgateway.url is for mode=cronjob: the daemon serves /metrics itself (scrape it with metrics.serviceMonitor.enabled)" }}
{{- end }}
{{- if and (eq $mode "cronjob") (or $cfg.verifySchedule $cfg.verifyReadDataSubset) }}
{{- fail "config.verifySchedule and config.verifyReadDataSubset need mode=daemon: the CronJob runs backups only" }}
{{- end }}
{{- if and $cfg.verifyReadDataSubset (not $cfg.verifySchedule) }}
{{- fail "config.verifyReadDataSubset applies to scheduled verifies: set config.verifySchedule too" }}
{{- end }}
{{- if gt (include "s32s3.shards" . | int64) 1 }}
{{- if eq $mode "daemon" }}
{{- fail "backup.shards needs mode=cronjob: the daemon is one pod (a Deployment of one replica); set backup.shards to 1, or use mode=cronjob to run each backup as an Indexed Job of backup.shards pods" }}
{{- end }}
{{- range .Values.backup.args }}
{{- if or (has . (list "--shard" "--run-id")) (hasPrefix "--shard=" .) (hasPrefix "--run-id=" .) }}
{{- fail (printf "backup.args: %s would override the shard and the run id backup.shards gives each pod (S32S3_SHARD, S32S3_RUN_ID): remove it" .) }}
{{- end }}
{{- end }}
{{- /* A run id is [A-Za-z0-9_-]{1,64}: Job names have 63 characters at most, but may have dots (so may releases'). */}}
{{- $cronjob := include "s32s3.backupName" . }}
{{- if not (regexMatch "^[A-Za-z0-9_-]+$" $cronjob) }}
{{- fail (printf "backup.shards: a sharded run's id is its Job's name, %s-<time>, and s32s3 takes letters, digits, _ and - only: set fullnameOverride to a name without dots" $cronjob) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Labels of a monitoring object: the chart's, the component's, and extra labels from values (a Prometheus' or
Grafana sidecar's selector). Merged as maps, so an extra label cannot repeat a key; the chart's win.
Arguments: (dict "root" $ "component" <component or ""> "extra" <map>).
*/}}
{{- define "s32s3.labelsWith" -}}
{{- $labels := include "s32s3.labels" .root | fromYaml }}
{{- with .component }}
{{- $_ := set $labels "app.kubernetes.io/component" . }}
{{- end }}
{{- toYaml (merge $labels (.extra | default dict)) }}
{{- end }}
