{{- /*
The context the generated object templates read as $c: the same names, labels and recorded spec
as edgecast.deploy.manifests.render computes in Python, from the chart's values. The tests
render both and compare the objects.
*/ -}}

{{- /* A DNS-1123 label for a text, as manifests.dns_label: (list text limit). */ -}}
{{- define "edgecast-predictor.dnsLabel" -}}
{{- $text := index . 0 -}}
{{- $limit := index . 1 | int -}}
{{- $slug := regexReplaceAll "[^a-z0-9-]+" (lower $text) "-" | trimAll "-" -}}
{{- if and (eq $slug $text) (le (len $slug) $limit) -}}
{{- $slug -}}
{{- else -}}
{{- $head := trunc (sub $limit 7 | int) $slug | trimAll "-" | default "n" -}}
{{- printf "%s-%s" $head (sha256sum $text | trunc 6) -}}
{{- end -}}
{{- end }}

{{- /* A model id as a label value, as manifests.model_label. */ -}}
{{- define "edgecast-predictor.modelLabel" -}}
{{- if regexMatch "^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$" . -}}
{{- . -}}
{{- else -}}
{{- printf "%s-%s" (include "edgecast-predictor.dnsLabel" (list . 52)) (sha256sum . | trunc 10) | trunc 63 | trimAll "-_." -}}
{{- end -}}
{{- end }}

{{- /* A number as Python writes a float (2.0, 0.5). */ -}}
{{- define "edgecast-predictor.pyfloat" -}}
{{- $x := float64 . -}}
{{- if eq $x (floor $x) -}}{{ printf "%.1f" $x }}{{- else -}}{{ $x }}{{- end -}}
{{- end }}

{{- /* A value as Python's json.dumps(sort_keys=True) writes it. */ -}}
{{- define "edgecast-predictor.pyjson" -}}
{{- if kindIs "invalid" . -}}
null
{{- else if kindIs "map" . -}}
{{ "{" }}{{ range $i, $k := keys . | sortAlpha }}{{ if $i }}, {{ end }}{{ toJson $k }}: {{ include "edgecast-predictor.pyjson" (index $ $k) }}{{ end }}{{ "}" }}
{{- else if kindIs "slice" . -}}
[{{ range $i, $v := . }}{{ if $i }}, {{ end }}{{ include "edgecast-predictor.pyjson" $v }}{{ end }}]
{{- else if kindIs "bool" . -}}
{{ . }}
{{- else if or (kindIs "float64" .) (kindIs "int64" .) (kindIs "int" .) -}}
{{- if eq (float64 .) (floor (float64 .)) -}}{{ int64 . }}{{- else -}}{{ . }}{{- end -}}
{{- else -}}
{{ toJson . }}
{{- end -}}
{{- end }}

{{- /* What every object of the release shares: (dict "root" $ "out" $c). */ -}}
{{- define "edgecast-predictor.shared" -}}
{{- $v := .root.Values -}}
{{- $_ := set .out "namespace" .root.Release.Namespace -}}
{{- $_ := set .out "predictor_service_account" $v.serviceAccounts.predictor -}}
{{- $_ := set .out "rollout_service_account" $v.serviceAccounts.rollout -}}
{{- end }}

{{- /*
One node's predictor: (dict "root" $ "node" <entry of nodes> "out" $c).
The model is the one the node's Service selects when the release already runs (a rollout may
have switched it), else the node's modelId, else the chart's: `helm upgrade` never takes a node
back to an older model, and keeps the model the switched predictor scores in shadow.
*/ -}}
{{- define "edgecast-predictor.context" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $n := .node -}}
{{- $c := .out -}}
{{- include "edgecast-predictor.shared" (dict "root" $root "out" $c) -}}
{{- $ns := $root.Release.Namespace -}}
{{- $node := required "every entry of nodes needs a name (the Kubernetes node name)" $n.name -}}
{{- $key := include "edgecast-predictor.dnsLabel" (list $node 24) -}}
{{- $service := printf "predictor-%s" $key -}}
{{- $model := $n.modelId | default $v.modelId -}}
{{- $shadow := "" -}}
{{- $live := lookup "v1" "Service" $ns $service -}}
{{- if $live -}}
{{- $selected := index ($live.spec.selector | default dict) "edgecast.io/model" | default "" -}}
{{- range $d := (lookup "apps/v1" "Deployment" $ns "").items | default list -}}
{{- $labels := $d.metadata.labels | default dict -}}
{{- if and (eq (index $labels "edgecast.io/node" | default "") $key) (eq (index $labels "edgecast.io/model" | default "") $selected) (not $d.metadata.deletionTimestamp) -}}
{{- $notes := $d.metadata.annotations | default dict -}}
{{- $model = index $notes "edgecast.io/model-id" | default $model -}}
{{- $recorded := index $notes "edgecast.io/spec" | default "{}" | fromJson -}}
{{- $shadow = $recorded.shadow_model_id | default "" -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if not $model -}}
{{- fail (printf "node %s has no model to serve: set modelId (or its nodes[].modelId)" $node) -}}
{{- end -}}
{{- $_ := set $c "node" $node -}}
{{- $_ := set $c "model_id" $model -}}
{{- $_ := set $c "image" $v.image -}}
{{- $_ := set $c "service_account" $v.serviceAccounts.predictor -}}
{{- $_ := set $c "store_host_path" $v.store.hostPath -}}
{{- $_ := set $c "runtime" ($n.runtime | default $v.runtime) -}}
{{- $_ := set $c "port" ($v.port | int) -}}
{{- $_ := set $c "threads" ($v.threads | int) -}}
{{- $_ := set $c "image_pull_policy" $v.imagePullPolicy -}}
{{- $_ := set $c "prestop_seconds" ($v.shutdown.prestopSeconds | int) -}}
{{- $_ := set $c "shutdown_delay_seconds" (include "edgecast-predictor.pyfloat" $v.shutdown.delaySeconds) -}}
{{- $_ := set $c "drain_timeout_seconds" (include "edgecast-predictor.pyfloat" $v.shutdown.drainTimeoutSeconds) -}}
{{- $_ := set $c "termination_grace_seconds" ($v.shutdown.terminationGraceSeconds | int) -}}
{{- $_ := set $c "startup_seconds" ($v.startupSeconds | int) -}}
{{- $_ := set $c "service_type" $v.service.type -}}
{{- $_ := set $c "service_port" ($v.service.port | int) -}}
{{- $nodePort := $v.service.nodePort | default 0 | int -}}
{{- $_ := set $c "node_port" (ternary $nodePort nil (gt $nodePort 0)) -}}
{{- $_ := set $c "admin_token_secret" ($v.adminTokenSecret | default nil) -}}
{{- $_ := set $c "public_key_configmap" ($v.publicKeyConfigMap | default nil) -}}
{{- $_ := set $c "shadow_model_id" (ternary $shadow nil (and (ne $shadow "") (ne $shadow $model))) -}}
{{- $_ := set $c "helm_release" $root.Release.Name -}}
{{- $_ := set $c "resources" $v.resources -}}
{{- $needed := addf $c.prestop_seconds (float64 $c.shutdown_delay_seconds) (float64 $c.drain_timeout_seconds) -}}
{{- if le (float64 $c.termination_grace_seconds) $needed -}}
{{- fail (printf "shutdown.terminationGraceSeconds (%d) must exceed prestopSeconds, delaySeconds and drainTimeoutSeconds together (%v)" $c.termination_grace_seconds $needed) -}}
{{- end -}}
{{- if and $c.node_port (eq $c.service_type "ClusterIP") -}}
{{- fail "service.nodePort needs service.type NodePort or LoadBalancer" -}}
{{- end -}}
{{- $label := include "edgecast-predictor.modelLabel" $model -}}
{{- $common := dict "app.kubernetes.io/name" "edgecast-predictor" "app.kubernetes.io/part-of" "edgecast" "app.kubernetes.io/managed-by" "Helm" "edgecast.io/node" $key -}}
{{- $_ := set $c "deployment_name" (printf "predictor-%s-%s" $key (sha256sum $model | trunc 10)) -}}
{{- $_ := set $c "service_name" $service -}}
{{- $_ := set $c "service_labels" $common -}}
{{- $_ := set $c "labels" (merge (dict "edgecast.io/model" $label) $common) -}}
{{- $_ := set $c "selector" (dict "app.kubernetes.io/name" "edgecast-predictor" "edgecast.io/node" $key "edgecast.io/model" $label) -}}
{{- $_ := set $c "spec_json" (include "edgecast-predictor.spec" $c) -}}
{{- end }}
