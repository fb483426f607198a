"""Tests of the s32s3 Helm chart with the real Helm library (PyPI `helm-python-sdk`, Helm's Go SDK over a C ABI).

Every test renders (or lints) the chart the way `helm template`/`helm install` would, parses the manifests
with PyYAML and asserts on the objects. Run from the repository root:

    .venv/bin/python -m pytest -q chart/tests
"""

from __future__ import annotations

import copy
import json
import re
import tarfile
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

CHART_DIR = Path(__file__).resolve().parent.parent
RELEASE = "prod"
NAMESPACE = "minio"

# The parameter table of issue 7 (from the original S32S3 chart), issue 16's daemon mode and monitoring and
# issue 14's shards: every name with its default.
EXPECTED_DEFAULTS: dict[str, Any] = {
    "image": {"name": "ctr.0x.pt/ops/s32s3", "pullPolicy": "IfNotPresent", "tag": ""},
    "imagePullSecrets": [],
    "nameOverride": "",
    "fullnameOverride": "",
    "mode": "cronjob",
    "backup": {"args": ["backup"], "shards": 1},
    "daemon": {"args": ["daemon"]},
    "restore": {"enabled": False, "at": ""},
    "config": {
        "schedule": "* * * * *",
        "verifySchedule": "",
        "verifyReadDataSubset": 0,
        "backupBucket": "backups",
        "expirationDays": 7,
        "extraEnv": {},
        "destination": {
            "access_key_id": {},
            "secret_access_key": {},
            "endpoint": {},
            "region": {},
            "provider": {},
        },
        "source": {
            "access_key_id": {},
            "secret_access_key": {},
            "endpoint": {},
            "region": {},
            "provider": {},
        },
        "crypt": {"password": {}, "password2": {}},
        "rclone": {},
    },
    "metrics": {
        "port": 9090,
        "serviceMonitor": {"enabled": False, "interval": "1m", "labels": {}},
        "prometheusRule": {
            "enabled": False,
            "labels": {},
            "selector": "",
            "staleAfterHours": 26,
            "for": "15m",
            "severity": "warning",
        },
        "grafanaDashboard": {"enabled": False, "labelKey": "grafana_dashboard", "labelValue": "1", "annotations": {}},
        "pushgateway": {"url": ""},
    },
    "podAnnotations": {},
    "podLabels": {},
    "podSecurityContext": {},
    "resources": {},
    "nodeSelector": {},
    "tolerations": [],
    "affinity": {},
}

ENDPOINT_KEYS = ["access_key_id", "secret_access_key", "endpoint", "region", "provider"]

# config.rclone option (rclone's name) -> the s32s3 variable it must become.
RCLONE_ENV = {
    "transfers": "S32S3_TRANSFERS",
    "checkers": "S32S3_CHECKERS",
    "bwlimit": "S32S3_BWLIMIT",
    "s3-upload-cutoff": "S32S3_MULTIPART_THRESHOLD",
    "s3-chunk-size": "S32S3_PART_SIZE",
    "s3-upload-concurrency": "S32S3_PART_CONCURRENCY",
    "retries": "S32S3_RETRIES",
    "max-delete": "S32S3_MAX_DELETE",
    "log-level": "S32S3_LOG_LEVEL",
}

# What a pod gets with the default values: everything else is left out.
DEFAULT_ENV = {
    "S32S3_LOG_FORMAT": "json",
    "S32S3_BACKUP_BUCKET": "backups",
    "S32S3_EXPIRATION_DAYS": "7",
    "S32S3_SCHEDULE": "* * * * *",
}

# The metrics s32s3 exposes (the daemon's /metrics, a run's push): the rule and the dashboard use these only.
METRICS = {
    "s32s3_last_success_timestamp_seconds",
    "s32s3_last_run_duration_seconds",
    "s32s3_last_run_objects",
    "s32s3_last_run_bytes",
    "s32s3_runs_total",
    "s32s3_errors_total",
    "s32s3_running",
    "s32s3_snapshots",
    "s32s3_backup_bucket_bytes",
    "s32s3_last_run_status",
    "s32s3_snapshot_objects",
    "s32s3_snapshot_bytes",
    "s32s3_newest_snapshot_age_seconds",
    "s32s3_last_verify_timestamp_seconds",
    "s32s3_last_verify_objects",
    "s32s3_last_verify_damaged_objects",
    "s32s3_verify_runs_total",
}

# metrics.<name>.enabled -> the kind of object it adds.
MONITORING_KINDS = {"serviceMonitor": "ServiceMonitor", "prometheusRule": "PrometheusRule", "grafanaDashboard": "ConfigMap"}

DASHBOARD = json.loads((CHART_DIR / "dashboards" / "s32s3.json").read_text())

DAEMON = {"mode": "daemon"}
EVERYTHING = {
    "mode": "daemon",
    "daemon": {"args": ["daemon", "--bucket", "photos"]},
    "config": {"verifySchedule": "0 5 * * 0", "verifyReadDataSubset": 5},
    "metrics": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
        "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
        "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "Backups"}},
    },
}


# --- helpers ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chart() -> helm.Chart:
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded


def render(chart: helm.Chart, values: dict[str, Any] | None = None, *, release: str = RELEASE) -> list[dict]:
    """Every object the chart renders (NOTES.txt aside), parsed."""
    manifests = chart.render(values, name=release, namespace=NAMESPACE)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc is not None)
    return objects


def kinds(objects: list[dict]) -> list[str]:
    return sorted(obj["kind"] for obj in objects)


def workload(chart: helm.Chart, values: dict[str, Any] | None = None, **kwargs: Any) -> dict:
    """The single backup CronJob or restore Job the values render."""
    objects = render(chart, values, **kwargs)
    assert len(objects) == 1, f"expected one object, got {kinds(objects)}"
    assert objects[0]["kind"] in ("CronJob", "Job")
    return objects[0]


def one(objects: list[dict], kind: str) -> dict:
    """The single object of a kind among those rendered."""
    found = [obj for obj in objects if obj["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {kinds(objects)}"
    return found[0]


def pod_template(obj: dict) -> dict:
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]
    return obj["spec"]["template"]


def job_spec(obj: dict) -> dict:
    """The spec of the Job: the restore Job's own, or the one the CronJob creates."""
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]
    return obj["spec"]


def pod_spec(obj: dict) -> dict:
    return pod_template(obj)["spec"]


def container(obj: dict) -> dict:
    containers = pod_spec(obj)["containers"]
    assert len(containers) == 1
    return containers[0]


def env_list(obj: dict) -> list[dict]:
    entries = container(obj)["env"]
    names = [entry["name"] for entry in entries]
    assert len(names) == len(set(names)), f"a variable is set twice: {names}"
    return entries


def env(obj: dict) -> dict[str, Any]:
    """Variable name -> its value (a string) or its valueFrom (a dict)."""
    result = {}
    for entry in env_list(obj):
        assert set(entry) in ({"name", "value"}, {"name", "valueFrom"}), entry
        # Kubernetes takes strings only: an unquoted 7 in the manifest would be refused by the API server.
        assert isinstance(entry.get("value", ""), str), entry
        result[entry["name"]] = entry.get("value", entry.get("valueFrom"))
    return result


def secret_ref(name: str, key: str) -> dict:
    return {"secretKeyRef": {"name": name, "key": key}}


def with_config(**config: Any) -> dict:
    return {"config": config}


def leaf_parameters(values: dict, prefix: str = "") -> list[str]:
    """Parameter names as the table lists them: `{}`/`[]` defaults and maps of settings are leaves."""
    names = []
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in ("extraEnv", "rclone"):
            names.extend(leaf_parameters(value, f"{name}."))
        else:
            names.append(name)
    return names


# --- defaults, lint ---------------------------------------------------------------------------------------


def test_chart_metadata(chart: helm.Chart) -> None:
    meta = chart.metadata
    assert (meta["apiVersion"], meta["name"], meta["version"], meta["appVersion"]) == ("v2", "s32s3", "0.1.0", "0.1.0")


def test_defaults_are_the_parameter_table_of_the_original_chart(chart: helm.Chart) -> None:
    assert chart.values == EXPECTED_DEFAULTS
    chart.validate_schema(chart.values)


@pytest.mark.parametrize(
    "values",
    [
        None,
        {"restore": {"enabled": True, "at": "2025-01-31T23:00:00Z"}},
        with_config(source={"endpoint": {"value": "http://minio:9000"}}, rclone={"transfers": 8}),
        {"backup": {"shards": 3}},
    ],
    ids=["defaults", "restore", "configured", "shards"],
)
def test_lint_passes(values: dict | None) -> None:
    report = helm.lint(CHART_DIR, values, strict=True, namespace=NAMESPACE)
    assert report["total_charts_linted"] == 1
    assert report["errors"] == []
    # Severity 1 is informational ("icon is recommended"); nothing may be a warning (2) or an error (3).
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


# --- the default render -----------------------------------------------------------------------------------


def test_defaults_render_one_backup_cronjob(chart: helm.Chart) -> None:
    objects = render(chart)
    assert kinds(objects) == ["CronJob"]
    cronjob = objects[0]
    assert cronjob["apiVersion"] == "batch/v1"
    assert cronjob["metadata"]["name"] == "prod-s32s3-backup"
    spec = cronjob["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["schedule"] == "* * * * *"
    assert spec["timeZone"] == "Etc/UTC"
    assert pod_spec(cronjob)["restartPolicy"] == "Never"

    main = container(cronjob)
    assert main["image"] == "ctr.0x.pt/ops/s32s3:0.1.0"
    assert main["imagePullPolicy"] == "IfNotPresent"
    assert main["args"] == ["backup"]
    assert "command" not in main  # the image's entrypoint is s32s3
    assert env(cronjob) == DEFAULT_ENV
    assert "resources" not in main
    for absent in ("imagePullSecrets", "nodeSelector", "tolerations", "affinity"):
        assert absent not in pod_spec(cronjob)
    assert "annotations" not in pod_template(cronjob)["metadata"]


def test_default_security_context_is_restricted(chart: helm.Chart) -> None:
    cronjob = workload(chart)
    pod = pod_spec(cronjob)
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["automountServiceAccountToken"] is False
    main = container(cronjob)
    assert main["securityContext"] == {
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    # A read-only root filesystem needs a writable /tmp.
    assert main["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {}}]


def test_labels(chart: helm.Chart) -> None:
    cronjob = workload(chart)
    assert cronjob["metadata"]["labels"] == {
        "helm.sh/chart": "s32s3-0.1.0",
        "app.kubernetes.io/name": "s32s3",
        "app.kubernetes.io/instance": RELEASE,
        "app.kubernetes.io/version": "0.1.0",
        "app.kubernetes.io/managed-by": "Helm",
        "app.kubernetes.io/component": "backup",
    }
    assert pod_template(cronjob)["metadata"]["labels"] == {
        "app.kubernetes.io/name": "s32s3",
        "app.kubernetes.io/instance": RELEASE,
        "app.kubernetes.io/component": "backup",
    }


def test_a_usage_error_fails_the_job_without_retries(chart: helm.Chart) -> None:
    for values in (None, {"restore": {"enabled": True}}):
        assert job_spec(workload(chart, values))["podFailurePolicy"]["rules"] == [
            {"action": "FailJob", "onExitCodes": {"containerName": "s32s3", "operator": "In", "values": [2]}}
        ]


# --- backup and restore -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "args"),
    [
        ("", ["restore"]),
        ("2025-01-31T23:00:00Z", ["restore", "--at", "2025-01-31T23:00:00Z"]),
        ("2025-01-31T23:00:00.5+01:00", ["restore", "--at", "2025-01-31T23:00:00.5+01:00"]),
    ],
)
def test_restore_enabled_renders_a_restore_job_and_no_cronjob(chart: helm.Chart, at: str, args: list[str]) -> None:
    objects = render(chart, {"restore": {"enabled": True, "at": at}})
    assert kinds(objects) == ["Job"]
    job = objects[0]
    assert job["apiVersion"] == "batch/v1"
    assert job["metadata"]["name"] == "prod-s32s3-restore"
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "restore"
    assert container(job)["args"] == args
    assert container(job)["image"] == "ctr.0x.pt/ops/s32s3:0.1.0"
    assert pod_spec(job)["restartPolicy"] == "Never"
    assert pod_spec(job)["securityContext"]["runAsNonRoot"] is True
    assert container(job)["securityContext"]["readOnlyRootFilesystem"] is True
    # The restore needs the same connection settings as the backup.
    assert env(job) == DEFAULT_ENV


def test_restore_at_is_ignored_while_restore_is_disabled(chart: helm.Chart) -> None:
    cronjob = workload(chart, {"restore": {"enabled": False, "at": "2025-01-31T23:00:00Z"}})
    assert cronjob["kind"] == "CronJob"
    assert container(cronjob)["args"] == ["backup"]


def test_restore_at_as_an_unquoted_yaml_timestamp(chart: helm.Chart) -> None:
    values = helm.values_from_yaml("restore:\n  enabled: true\n  at: 2025-01-31T23:00:00Z\n")
    job = workload(chart, values)
    assert container(job)["args"] == ["restore", "--at", "2025-01-31T23:00:00Z"]


def test_schedule(chart: helm.Chart) -> None:
    cronjob = workload(chart, with_config(schedule="30 2 * * 0"))
    assert cronjob["spec"]["schedule"] == "30 2 * * 0"
    assert env(cronjob)["S32S3_SCHEDULE"] == "30 2 * * 0"


def test_backup_args(chart: helm.Chart) -> None:
    args = ["backup", "--bucket", "photos", "--bucket", "invoices", "--dry-run"]
    cronjob = workload(chart, {"backup": {"args": args}})
    assert container(cronjob)["args"] == args


def test_backup_bucket_and_expiration_days(chart: helm.Chart) -> None:
    cronjob = workload(chart, with_config(backupBucket="minio-backups", expirationDays=30))
    assert env(cronjob)["S32S3_BACKUP_BUCKET"] == "minio-backups"
    assert env(cronjob)["S32S3_EXPIRATION_DAYS"] == "30"


# --- connection settings and passwords: {value} and {valueFrom} -------------------------------------------


SETTINGS = [(section, key) for section in ("source", "destination") for key in ENDPOINT_KEYS] + [
    ("crypt", "password"),
    ("crypt", "password2"),
]


def variable(section: str, key: str) -> str:
    return f"S32S3_{section.upper()}_{key.upper()}"


@pytest.mark.parametrize(("section", "key"), SETTINGS, ids=[f"{s}.{k}" for s, k in SETTINGS])
def test_setting_from_value_and_from_value_from(chart: helm.Chart, section: str, key: str) -> None:
    name = variable(section, key)

    literal = workload(chart, with_config(**{section: {key: {"value": "v-1"}}}))
    assert env(literal) == {**DEFAULT_ENV, name: "v-1"}

    ref = secret_ref("minio", "root-password")
    referenced = workload(chart, with_config(**{section: {key: {"valueFrom": ref}}}))
    assert env(referenced) == {**DEFAULT_ENV, name: ref}

    config_map = {"configMapKeyRef": {"name": "settings", "key": key, "optional": True}}
    from_config_map = workload(chart, with_config(**{section: {key: {"valueFrom": config_map}}}))
    assert env(from_config_map)[name] == config_map


def test_every_setting_at_once_in_a_fixed_order(chart: helm.Chart) -> None:
    config: dict[str, dict] = {"source": {}, "destination": {}, "crypt": {}}
    for index, (section, key) in enumerate(SETTINGS):
        form = {"value": f"{section}-{key}"} if index % 2 else {"valueFrom": secret_ref(section, key)}
        config[section][key] = form
    for values in (with_config(**config), {**with_config(**config), "restore": {"enabled": True}}):
        obj = workload(chart, values)
        names = [entry["name"] for entry in env_list(obj)]
        order = ["endpoint", "access_key_id", "secret_access_key", "region", "provider"]
        assert names == [
            "S32S3_LOG_FORMAT",
            *(variable("source", key) for key in order),
            *(variable("destination", key) for key in order),
            "S32S3_CRYPT_PASSWORD",
            "S32S3_CRYPT_PASSWORD2",
            "S32S3_BACKUP_BUCKET",
            "S32S3_EXPIRATION_DAYS",
            "S32S3_SCHEDULE",
        ]
        for index, (section, key) in enumerate(SETTINGS):
            expected = f"{section}-{key}" if index % 2 else secret_ref(section, key)
            assert env(obj)[variable(section, key)] == expected


def test_a_number_given_as_value_is_a_string(chart: helm.Chart) -> None:
    cronjob = workload(chart, with_config(source={"region": {"value": 1}, "endpoint": {"value": ""}}))
    assert env(cronjob)["S32S3_SOURCE_REGION"] == "1"
    # An explicit empty value is passed on: {value: ""} is not the same as leaving the setting out.
    assert env(cronjob)["S32S3_SOURCE_ENDPOINT"] == ""


def test_a_setting_with_both_value_and_value_from_is_rejected(chart: helm.Chart) -> None:
    both = with_config(source={"endpoint": {"value": "a", "valueFrom": secret_ref("s", "k")}})
    with pytest.raises(helm.HelmValuesError, match="/config/source/endpoint"):
        render(chart, both)


# --- extraEnv ---------------------------------------------------------------------------------------------


def test_extra_env_plain_and_value_forms(chart: helm.Chart) -> None:
    extra = {
        "S32S3_BACKUP_PREFIX": "cluster-a",
        "PLAIN_INT": 3,
        "PLAIN_BIG": 10_000_000,
        "PLAIN_FLOAT": 1.5,
        "PLAIN_BOOL": True,
        "AS_VALUE": {"value": "x"},
        "FROM_SECRET": {"valueFrom": secret_ref("proxy", "url")},
        "LEFT_OUT": {},
        "REFERS": "$(S32S3_BACKUP_BUCKET)/x",
    }
    cronjob = workload(chart, with_config(extraEnv=extra))
    assert env(cronjob) == {
        **DEFAULT_ENV,
        "S32S3_BACKUP_PREFIX": "cluster-a",
        "PLAIN_INT": "3",
        "PLAIN_BIG": "10000000",
        "PLAIN_FLOAT": "1.5",
        "PLAIN_BOOL": "true",
        "AS_VALUE": "x",
        "FROM_SECRET": secret_ref("proxy", "url"),
        "REFERS": "$(S32S3_BACKUP_BUCKET)/x",
    }
    # extraEnv comes after the chart's variables, so $(NAME) references to them resolve.
    names = [entry["name"] for entry in env_list(cronjob)]
    assert names.index("REFERS") > names.index("S32S3_BACKUP_BUCKET")
    assert names[-len(extra) + 1 :] == sorted(name for name in extra if name != "LEFT_OUT")


def test_extra_env_may_override_the_log_format(chart: helm.Chart) -> None:
    cronjob = workload(chart, with_config(extraEnv={"S32S3_LOG_FORMAT": "text"}))
    assert env(cronjob)["S32S3_LOG_FORMAT"] == "text"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"extraEnv": {"S32S3_BACKUP_BUCKET": "x"}},
            "config.extraEnv.S32S3_BACKUP_BUCKET: S32S3_BACKUP_BUCKET is already set by config.backupBucket",
        ),
        (
            {"extraEnv": {"S32S3_SOURCE_ENDPOINT": "x"}, "source": {"endpoint": {"value": "y"}}},
            "S32S3_SOURCE_ENDPOINT is already set by config.source.endpoint",
        ),
        ({"extraEnv": {"S32S3_TRANSFERS": 4}, "rclone": {"transfers": 8}}, "already set by config.rclone.transfers"),
    ],
)
def test_a_variable_set_twice_fails_the_render(chart: helm.Chart, config: dict, message: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=re.escape(message)):
        render(chart, with_config(**config))


def test_an_extra_env_variable_the_chart_does_not_set_is_fine(chart: helm.Chart) -> None:
    # S32S3_SOURCE_ENDPOINT is left out with the defaults, so extraEnv may give it.
    cronjob = workload(chart, with_config(extraEnv={"S32S3_SOURCE_ENDPOINT": "http://minio:9000"}))
    assert env(cronjob)["S32S3_SOURCE_ENDPOINT"] == "http://minio:9000"


# --- config.rclone tuning ---------------------------------------------------------------------------------


def test_rclone_options_map_to_s32s3_variables(chart: helm.Chart) -> None:
    rclone = {
        "transfers": 16,
        "checkers": 32,
        "bwlimit": "10M",
        "s3-upload-cutoff": "200Mi",
        "s3-chunk-size": 67108864,  # Helm reads numbers as float64: must not become 6.7108864e+07
        "s3-upload-concurrency": 4,
        "retries": 5,
        "max-delete": 25,
        "log-level": "debug",
    }
    cronjob = workload(chart, with_config(rclone=rclone))
    expected = {RCLONE_ENV[option]: str(value) for option, value in rclone.items()}
    assert env(cronjob) == {**DEFAULT_ENV, **expected}
    assert expected["S32S3_PART_SIZE"] == "67108864"


def test_rclone_options_with_underscores_and_value_forms(chart: helm.Chart) -> None:
    rclone = {
        "s3_chunk_size": "64Mi",
        "s3_upload_cutoff": {"value": 209715200},
        "s3_upload_concurrency": {"valueFrom": {"configMapKeyRef": {"name": "tuning", "key": "parts"}}},
        "max_delete": {},
        "log_level": {"value": "info"},
    }
    cronjob = workload(chart, with_config(rclone=rclone))
    assert env(cronjob) == {
        **DEFAULT_ENV,
        "S32S3_PART_SIZE": "64Mi",
        "S32S3_MULTIPART_THRESHOLD": "209715200",
        "S32S3_PART_CONCURRENCY": {"configMapKeyRef": {"name": "tuning", "key": "parts"}},
        "S32S3_LOG_LEVEL": "info",
    }


def test_rclone_tuning_reaches_the_restore_job(chart: helm.Chart) -> None:
    job = workload(chart, {"restore": {"enabled": True}, **with_config(rclone={"transfers": 2})})
    assert env(job)["S32S3_TRANSFERS"] == "2"


@pytest.mark.parametrize("option", ["max_backlog", "s3-acl", "Transfers"])
def test_an_unknown_rclone_option_fails_the_render_naming_it(chart: helm.Chart, option: str) -> None:
    with pytest.raises(helm.HelmRenderError) as failure:
        render(chart, with_config(rclone={"transfers": 4, option: {"value": "1"}}))
    message = str(failure.value)
    assert f"config.rclone.{option}: unknown option" in message
    # The message lists the names that do work.
    for known in RCLONE_ENV:
        assert known in message


def test_an_rclone_option_in_both_spellings_fails(chart: helm.Chart) -> None:
    with pytest.raises(helm.HelmRenderError, match="S32S3_PART_SIZE is already set by config.rclone.s3-chunk-size"):
        render(chart, with_config(rclone={"s3-chunk-size": "8Mi", "s3_chunk_size": "16Mi"}))


def test_values_from_set_flags(chart: helm.Chart) -> None:
    # `--set` parses numbers as int64, values files as float64: both must print as plain integers.
    values = helm.parse_set_string(
        "restore.enabled=true,restore.at=2025-01-31T23:00:00Z,config.expirationDays=30,"
        "config.rclone.s3-chunk-size=67108864,config.extraEnv.BIG=10000000"
    )
    job = workload(chart, values)
    assert container(job)["args"] == ["restore", "--at", "2025-01-31T23:00:00Z"]
    assert env(job)["S32S3_EXPIRATION_DAYS"] == "30"
    assert env(job)["S32S3_PART_SIZE"] == "67108864"
    assert env(job)["BIG"] == "10000000"


# --- image, names, pods -----------------------------------------------------------------------------------


def test_image_name_tag_and_pull_policy(chart: helm.Chart) -> None:
    cronjob = workload(chart, {"image": {"name": "registry.example/s32s3", "tag": "1.2.3", "pullPolicy": "Always"}})
    assert container(cronjob)["image"] == "registry.example/s32s3:1.2.3"
    assert container(cronjob)["imagePullPolicy"] == "Always"


def test_image_pull_secrets(chart: helm.Chart) -> None:
    cronjob = workload(chart, {"imagePullSecrets": [{"name": "registry"}, "other-registry"]})
    assert pod_spec(cronjob)["imagePullSecrets"] == [{"name": "registry"}, {"name": "other-registry"}]


def test_name_override(chart: helm.Chart) -> None:
    cronjob = workload(chart, {"nameOverride": "backup-minio"})
    assert cronjob["metadata"]["name"] == "prod-backup-minio-backup"
    assert cronjob["metadata"]["labels"]["app.kubernetes.io/name"] == "backup-minio"
    assert pod_template(cronjob)["metadata"]["labels"]["app.kubernetes.io/name"] == "backup-minio"


def test_fullname_override(chart: helm.Chart) -> None:
    cronjob = workload(chart, {"fullnameOverride": "minio-s3-backup"})
    assert cronjob["metadata"]["name"] == "minio-s3-backup-backup"
    assert cronjob["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
    job = workload(chart, {"fullnameOverride": "minio-s3-backup", "restore": {"enabled": True}})
    assert job["metadata"]["name"] == "minio-s3-backup-restore"


def test_release_name_containing_the_chart_name_is_not_repeated(chart: helm.Chart) -> None:
    cronjob = workload(chart, release="s32s3-prod")
    assert cronjob["metadata"]["name"] == "s32s3-prod-backup"


def test_long_names_fit_kubernetes_limits(chart: helm.Chart) -> None:
    long_name = "a" * 40 + "-" + "b" * 30
    cronjob = workload(chart, {"fullnameOverride": long_name})
    # The CronJob controller appends 11 characters to the name of each Job it creates.
    assert len(cronjob["metadata"]["name"]) <= 52
    assert cronjob["metadata"]["name"].endswith("-backup")
    job = workload(chart, {"fullnameOverride": long_name, "restore": {"enabled": True}})
    assert len(job["metadata"]["name"]) <= 63
    assert job["metadata"]["name"].endswith("-restore")


def test_pod_annotations_and_labels(chart: helm.Chart) -> None:
    values = {
        "podAnnotations": {"prometheus.io/scrape": "false", "backup.velero.io/backup-volumes": ""},
        "podLabels": {"team": "storage", "app.kubernetes.io/part-of": "minio"},
    }
    for obj in (workload(chart, values), workload(chart, {**values, "restore": {"enabled": True}})):
        metadata = pod_template(obj)["metadata"]
        assert metadata["annotations"] == values["podAnnotations"]
        assert metadata["labels"]["team"] == "storage"
        assert metadata["labels"]["app.kubernetes.io/part-of"] == "minio"
        assert metadata["labels"]["app.kubernetes.io/instance"] == RELEASE


def test_resources_node_selector_tolerations_affinity(chart: helm.Chart) -> None:
    values = {
        "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "nodeSelector": {"kubernetes.io/arch": "amd64"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "backup", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}
                    ]
                }
            }
        },
    }
    for obj in (workload(chart, values), workload(chart, {**values, "restore": {"enabled": True}})):
        assert container(obj)["resources"] == values["resources"]
        assert pod_spec(obj)["nodeSelector"] == values["nodeSelector"]
        assert pod_spec(obj)["tolerations"] == values["tolerations"]
        assert pod_spec(obj)["affinity"] == values["affinity"]


def test_pod_security_context_is_merged_over_the_default(chart: helm.Chart) -> None:
    cronjob = workload(chart, {"podSecurityContext": {"runAsUser": 1000, "fsGroup": 2000}})
    assert pod_spec(cronjob)["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 65532,
        "fsGroup": 2000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    # The container keeps its own restrictions.
    assert container(cronjob)["securityContext"]["readOnlyRootFilesystem"] is True


def test_pod_security_context_can_override_and_drop_defaults(chart: helm.Chart) -> None:
    # OpenShift-style: the namespace assigns the uid; a false overrides the default true.
    values = helm.values_from_yaml(
        "podSecurityContext:\n"
        "  runAsUser: null\n"
        "  runAsGroup: null\n"
        "  runAsNonRoot: false\n"
        "  seccompProfile: {type: Localhost, localhostProfile: s32s3.json}\n"
    )
    job = workload(chart, {**values, "restore": {"enabled": True}})
    assert pod_spec(job)["securityContext"] == {
        "runAsNonRoot": False,
        "seccompProfile": {"type": "Localhost", "localhostProfile": "s32s3.json"},
    }


# --- sharded backups --------------------------------------------------------------------------------------

SHARDS = {"backup": {"shards": 3}}
SHARD_VARIABLES = {"JOB_COMPLETION_INDEX", "S32S3_SHARD", "S32S3_RUN_ID"}
# s32s3's --run-id: a sharded run's id is its Job's name.
RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def shard_env(shards: int) -> list[dict]:
    """What backup.shards adds to the backup pod's environment, in this order: Kubernetes expands
    $(JOB_COMPLETION_INDEX) only when that variable is declared before S32S3_SHARD."""
    index = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    job_name = "metadata.labels['batch.kubernetes.io/job-name']"
    return [
        {"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {"fieldPath": index}}},
        {"name": "S32S3_SHARD", "value": f"$(JOB_COMPLETION_INDEX)/{shards}"},
        {"name": "S32S3_RUN_ID", "valueFrom": {"fieldRef": {"fieldPath": job_name}}},
    ]


def assert_references_resolve(entries: list[dict]) -> None:
    """Every $(NAME) in a value names a variable declared earlier in the list: Kubernetes leaves any other
    reference as it is, so the process would read the text "$(NAME)"."""
    declared: set[str] = set()
    for entry in entries:
        for name in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", entry.get("value", "")):
            assert name in declared, f"{entry['name']} refers to {name}, which is not declared before it"
        declared.add(entry["name"])


def test_one_shard_is_the_plain_job_it_always_was(chart: helm.Chart) -> None:
    cronjob = workload(chart)
    assert set(job_spec(cronjob)) == {"podFailurePolicy", "template"}
    assert SHARD_VARIABLES & env(cronjob).keys() == set()
    default = chart.render(None, name=RELEASE, namespace=NAMESPACE)
    assert "completionMode" not in default["s32s3/templates/cronjob.yaml"]
    for values in (
        {"backup": {"shards": 1}},
        helm.values_from_yaml("backup:\n  shards: 1\n"),
        helm.parse_set_string("backup.shards=1"),
    ):
        assert chart.render(values, name=RELEASE, namespace=NAMESPACE) == default


@pytest.mark.parametrize(
    "values",
    [SHARDS, "backup:\n  shards: 3\n", "backup.shards=3"],
    ids=["dict", "values-file", "set-flag"],
)
def test_shards_make_each_backup_run_an_indexed_job(chart: helm.Chart, values: dict | str) -> None:
    # A values file reads 3 as a float64, --set as an int64: both must print as 3.
    if isinstance(values, str):
        values = helm.values_from_yaml(values) if "\n" in values else helm.parse_set_string(values)
    cronjob = workload(chart, values)
    spec = job_spec(cronjob)
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 3, 3)
    # Retries stay as they were: Kubernetes' backoffLimit for the whole Job, a usage error fails it at once.
    assert "backoffLimit" not in spec
    assert "backoffLimitPerIndex" not in spec
    assert spec["podFailurePolicy"] == job_spec(workload(chart))["podFailurePolicy"]
    entries = env_list(cronjob)
    assert entries[len(DEFAULT_ENV) :] == shard_env(3)
    names = [entry["name"] for entry in entries]
    assert names.index("JOB_COMPLETION_INDEX") < names.index("S32S3_SHARD")
    assert env(cronjob)["S32S3_SHARD"] == "$(JOB_COMPLETION_INDEX)/3"
    assert_references_resolve(entries)


def test_shards_change_nothing_else_in_the_cronjob(chart: helm.Chart) -> None:
    plain = workload(chart, POD_VALUES)
    sharded = workload(chart, {**POD_VALUES, "backup": {"shards": 4}})
    spec = job_spec(sharded)
    assert [spec.pop(key) for key in ("completionMode", "completions", "parallelism")] == ["Indexed", 4, 4]
    main = container(sharded)
    main["env"] = [entry for entry in main["env"] if entry["name"] not in SHARD_VARIABLES]
    assert sharded == plain


def test_the_shard_variables_sit_between_the_backup_settings_and_the_tuning(chart: helm.Chart) -> None:
    values = {
        "backup": {"shards": 16},
        "metrics": {"pushgateway": {"url": "http://pg:9091"}},
        **with_config(rclone={"transfers": 4}, extraEnv={"PREFIX": "$(S32S3_RUN_ID)-$(JOB_COMPLETION_INDEX)"}),
    }
    cronjob = workload(chart, values)
    entries = env_list(cronjob)
    assert [entry["name"] for entry in entries][len(DEFAULT_ENV) :] == [
        "S32S3_PUSHGATEWAY",
        "JOB_COMPLETION_INDEX",
        "S32S3_SHARD",
        "S32S3_RUN_ID",
        "S32S3_TRANSFERS",
        "PREFIX",
    ]
    assert entries[len(DEFAULT_ENV) + 1 : len(DEFAULT_ENV) + 4] == shard_env(16)
    assert (job_spec(cronjob)["completions"], job_spec(cronjob)["parallelism"]) == (16, 16)
    # config.extraEnv comes after them, so it may refer to the shard's variables.
    assert_references_resolve(entries)


def test_the_restore_job_ignores_shards(chart: helm.Chart) -> None:
    restore = {"restore": {"enabled": True, "at": "2025-01-31T23:00:00Z"}}
    job = workload(chart, {**restore, **SHARDS})
    assert "completionMode" not in job["spec"]
    assert SHARD_VARIABLES & env(job).keys() == set()
    assert chart.render({**restore, **SHARDS}, name=RELEASE, namespace=NAMESPACE) == chart.render(
        restore, name=RELEASE, namespace=NAMESPACE
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({**SHARDS, **DAEMON}, "backup.shards needs mode=cronjob: the daemon is one pod"),
        ({"backup": {"shards": 2, "args": ["backup", "--shard", "0/2"]}}, "backup.args: --shard would override"),
        ({"backup": {"shards": 2, "args": ["backup", "--shard=1/2"]}}, "backup.args: --shard=1/2 would override"),
        ({"backup": {"shards": 2, "args": ["backup", "--run-id", "nightly"]}}, "backup.args: --run-id would override"),
        ({"backup": {"shards": 2, "args": ["backup", "--run-id=nightly"]}}, "backup.args: --run-id=nightly would"),
        (
            {**SHARDS, **with_config(extraEnv={"S32S3_SHARD": "0/3"})},
            "config.extraEnv.S32S3_SHARD: S32S3_SHARD is already set by backup.shards",
        ),
        ({**SHARDS, **with_config(extraEnv={"S32S3_RUN_ID": "x"})}, "S32S3_RUN_ID is already set by backup.shards"),
        ({**SHARDS, **with_config(extraEnv={"JOB_COMPLETION_INDEX": "0"})}, "JOB_COMPLETION_INDEX is already set by"),
    ],
    ids=["daemon", "shard", "shard=", "run-id", "run-id=", "extraEnv-shard", "extraEnv-run-id", "extraEnv-index"],
)
def test_sharding_misconfigurations_fail_the_render(chart: helm.Chart, values: dict, message: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=re.escape(message)):
        render(chart, values)


def test_without_shards_the_backup_args_and_environment_are_the_users(chart: helm.Chart) -> None:
    values = {"backup": {"args": ["backup", "--shard", "0/2"]}, **with_config(extraEnv={"S32S3_RUN_ID": "x"})}
    cronjob = workload(chart, values)
    assert container(cronjob)["args"] == ["backup", "--shard", "0/2"]
    assert env(cronjob)["S32S3_RUN_ID"] == "x"


def test_a_release_name_with_a_dot_cannot_name_a_sharded_run(chart: helm.Chart) -> None:
    # Helm allows dots in release names and Kubernetes in CronJob and Job names; s32s3's run ids do not.
    with pytest.raises(helm.HelmRenderError, match=re.escape("Job's name, prod.eu-s32s3-backup-<time>")):
        render(chart, SHARDS, release="prod.eu")
    assert workload(chart, release="prod.eu")["metadata"]["name"] == "prod.eu-s32s3-backup"
    cronjob = workload(chart, {**SHARDS, "fullnameOverride": "prod-eu-s32s3"}, release="prod.eu")
    assert cronjob["metadata"]["name"] == "prod-eu-s32s3-backup"


def test_every_scheduled_job_name_is_a_run_id(chart: helm.Chart) -> None:
    for fullname in ("s32s3", "a" * 40 + "-" + "b" * 30, "a" * 44 + "-" + "b" * 30):
        cronjob = workload(chart, {**SHARDS, "fullnameOverride": fullname})
        # The CronJob controller names each Job <cronjob>-<scheduled time in minutes since the epoch>: 8 digits
        # today, 10 at most in the 11 characters the CronJob's name leaves.
        job_name = f"{cronjob['metadata']['name']}-{10**10 - 1}"
        assert RUN_ID.fullmatch(job_name), job_name


def test_notes_with_shards(chart: helm.Chart) -> None:
    notes = chart.render({"backup": {"shards": 4}}, name=RELEASE, namespace=NAMESPACE)["s32s3/templates/NOTES.txt"]
    assert "Indexed Job of 4 pods, shards 0/4 to 3/4" in notes
    assert "logs -f -l batch.kubernetes.io/job-name=prod-s32s3-backup-manual --prefix --max-log-requests 4" in notes
    assert "logs -f job/" not in notes
    assert "Indexed" not in chart.render(None, name=RELEASE, namespace=NAMESPACE)["s32s3/templates/NOTES.txt"]


# --- daemon mode ------------------------------------------------------------------------------------------


def test_daemon_mode_renders_a_deployment_and_a_service_and_no_cronjob(chart: helm.Chart) -> None:
    objects = render(chart, DAEMON)
    assert kinds(objects) == ["Deployment", "Service"]
    deployment = one(objects, "Deployment")
    assert deployment["apiVersion"] == "apps/v1"
    assert deployment["metadata"]["name"] == "prod-s32s3-daemon"
    assert deployment["metadata"]["labels"]["app.kubernetes.io/component"] == "daemon"
    spec = deployment["spec"]
    # Never two daemons, not even during a rollout.
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    assert spec["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "s32s3",
        "app.kubernetes.io/instance": RELEASE,
        "app.kubernetes.io/component": "daemon",
    }
    assert spec["selector"]["matchLabels"].items() <= pod_template(deployment)["metadata"]["labels"].items()
    assert pod_spec(deployment)["restartPolicy"] == "Always"
    main = container(deployment)
    assert main["args"] == ["daemon"]
    assert main["image"] == "ctr.0x.pt/ops/s32s3:0.1.0"
    # The daemon takes its schedule from S32S3_SCHEDULE and listens where the port says.
    assert env(deployment) == {**DEFAULT_ENV, "S32S3_LISTEN": "0.0.0.0:9090"}


def test_daemon_args(chart: helm.Chart) -> None:
    deployment = one(render(chart, {**DAEMON, "daemon": {"args": ["daemon", "--bucket", "photos"]}}), "Deployment")
    assert container(deployment)["args"] == ["daemon", "--bucket", "photos"]


@pytest.mark.parametrize("port", [9090, 8080])
def test_the_metrics_port_is_the_container_port_the_probes_the_listen_address_and_the_service(
    chart: helm.Chart, port: int
) -> None:
    objects = render(chart, {**DAEMON, "metrics": {"port": port}})
    main = container(one(objects, "Deployment"))
    assert main["ports"] == [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]
    host, _, listen_port = env(one(objects, "Deployment"))["S32S3_LISTEN"].rpartition(":")
    assert (host, int(listen_port)) == ("0.0.0.0", port)
    for probe in ("livenessProbe", "readinessProbe"):
        assert main[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}, probe
    service = one(objects, "Service")
    assert service["metadata"]["name"] == "prod-s32s3-metrics"
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "metrics", "port": port, "targetPort": "metrics", "protocol": "TCP"}]


def test_the_service_selects_the_daemon_pods(chart: helm.Chart) -> None:
    objects = render(chart, {**DAEMON, "podLabels": {"team": "storage"}})
    pod_labels = pod_template(one(objects, "Deployment"))["metadata"]["labels"]
    selector = one(objects, "Service")["spec"]["selector"]
    assert selector == one(objects, "Deployment")["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()


POD_VALUES = {
    "image": {"name": "registry.example/s32s3", "tag": "1.2.3", "pullPolicy": "Always"},
    "imagePullSecrets": ["registry"],
    "podAnnotations": {"a": "b"},
    "podLabels": {"team": "storage"},
    "podSecurityContext": {"fsGroup": 2000},
    "resources": {"requests": {"cpu": "500m"}, "limits": {"memory": "1Gi"}},
    "nodeSelector": {"kubernetes.io/arch": "amd64"},
    "tolerations": [{"key": "dedicated", "operator": "Exists"}],
    "affinity": {"podAntiAffinity": {}},
    **with_config(source={"endpoint": {"value": "http://minio:9000"}}, rclone={"transfers": 8}),
}


def test_the_daemon_pod_is_the_cronjob_pod_with_a_port_probes_and_restarts(chart: helm.Chart) -> None:
    cronjob = workload(chart, POD_VALUES)
    deployment = one(render(chart, {**POD_VALUES, **DAEMON}), "Deployment")
    cron_pod, daemon_pod = copy.deepcopy(pod_template(cronjob)), copy.deepcopy(pod_template(deployment))
    assert daemon_pod["spec"]["securityContext"] == cron_pod["spec"]["securityContext"]
    assert container(deployment)["securityContext"] == container(cronjob)["securityContext"]
    assert daemon_pod["spec"].pop("restartPolicy") == "Always"
    assert cron_pod["spec"].pop("restartPolicy") == "Never"
    assert daemon_pod["metadata"]["labels"].pop("app.kubernetes.io/component") == "daemon"
    assert cron_pod["metadata"]["labels"].pop("app.kubernetes.io/component") == "backup"
    daemon_main, cron_main = daemon_pod["spec"]["containers"][0], cron_pod["spec"]["containers"][0]
    assert daemon_main.pop("args") == ["daemon"]
    assert cron_main.pop("args") == ["backup"]
    for key in ("ports", "livenessProbe", "readinessProbe"):
        daemon_main.pop(key)
    # The same environment, with the listen address after the backup settings (before tuning and extraEnv).
    cron_env = cron_main.pop("env")
    after_schedule = [entry["name"] for entry in cron_env].index("S32S3_SCHEDULE") + 1
    listen = {"name": "S32S3_LISTEN", "value": "0.0.0.0:9090"}
    assert daemon_main.pop("env") == [*cron_env[:after_schedule], listen, *cron_env[after_schedule:]]
    assert cron_env[after_schedule:] == [{"name": "S32S3_TRANSFERS", "value": "8"}]
    # Everything else is the same pod.
    assert daemon_pod == cron_pod


def test_verify_settings_reach_the_daemon_only_when_set(chart: helm.Chart) -> None:
    assert "S32S3_VERIFY_SCHEDULE" not in env(one(render(chart, DAEMON), "Deployment"))
    for unset in ({"verifySchedule": "", "verifyReadDataSubset": 0}, {"verifySchedule": "", "verifyReadDataSubset": ""}):
        deployment = one(render(chart, {**DAEMON, **with_config(**unset)}), "Deployment")
        assert not {"S32S3_VERIFY_SCHEDULE", "S32S3_VERIFY_READ_DATA_SUBSET"} & env(deployment).keys()

    deployment = one(render(chart, {**DAEMON, **with_config(verifySchedule="0 5 * * 0")}), "Deployment")
    assert env(deployment)["S32S3_VERIFY_SCHEDULE"] == "0 5 * * 0"
    assert "S32S3_VERIFY_READ_DATA_SUBSET" not in env(deployment)

    for subset, text in ((5, "5"), (2.5, "2.5"), (100, "100")):
        values = {**DAEMON, **with_config(verifySchedule="@weekly", verifyReadDataSubset=subset)}
        deployment = one(render(chart, values), "Deployment")
        assert env(deployment)["S32S3_VERIFY_SCHEDULE"] == "@weekly"
        assert env(deployment)["S32S3_VERIFY_READ_DATA_SUBSET"] == text
        names = [entry["name"] for entry in env_list(deployment)]
        assert names[names.index("S32S3_SCHEDULE") :] == [
            "S32S3_SCHEDULE", "S32S3_VERIFY_SCHEDULE", "S32S3_VERIFY_READ_DATA_SUBSET", "S32S3_LISTEN"
        ]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (with_config(verifySchedule="0 5 * * 0"), "config.verifySchedule and config.verifyReadDataSubset need mode=daemon"),
        (with_config(verifyReadDataSubset=5), "need mode=daemon"),
        ({**DAEMON, **with_config(verifyReadDataSubset=5)}, "set config.verifySchedule too"),
        ({**DAEMON, **with_config(extraEnv={"S32S3_LISTEN": "0.0.0.0:1"})}, "S32S3_LISTEN is already set by metrics.port"),
    ],
)
def test_verify_and_listen_misconfigurations_fail_the_render(chart: helm.Chart, values: dict, message: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=re.escape(message)):
        render(chart, values)


def test_restore_renders_only_the_restore_job_in_daemon_mode_too(chart: helm.Chart) -> None:
    values = {**EVERYTHING, "restore": {"enabled": True, "at": "2025-01-31T23:00:00Z"}}
    objects = render(chart, values)
    assert kinds(objects) == ["Job"]
    job = objects[0]
    assert container(job)["args"] == ["restore", "--at", "2025-01-31T23:00:00Z"]
    assert pod_spec(job)["restartPolicy"] == "Never"
    # The restore is not the daemon: no listen address, no probes.
    assert "S32S3_LISTEN" not in env(job)
    assert "ports" not in container(job)
    assert "livenessProbe" not in container(job)


def test_daemon_names_fit_kubernetes_limits(chart: helm.Chart) -> None:
    long_name = "a" * 40 + "-" + "b" * 30
    objects = render(chart, {**EVERYTHING, "fullnameOverride": long_name})
    for obj in objects:
        assert len(obj["metadata"]["name"]) <= 63, obj["kind"]
    assert one(objects, "Deployment")["metadata"]["name"].endswith("-daemon")
    assert one(objects, "Service")["metadata"]["name"].endswith("-metrics")
    assert one(objects, "ConfigMap")["metadata"]["name"].endswith("-dashboard")


# --- monitoring -------------------------------------------------------------------------------------------


def test_defaults_render_no_monitoring_objects_and_leave_the_cronjob_as_it_was(chart: helm.Chart) -> None:
    """Monitoring that is off leaves no trace, however its other settings are given."""
    default = chart.render(None, name=RELEASE, namespace=NAMESPACE)
    off = {
        "mode": "cronjob",
        "daemon": {"args": ["daemon", "--bucket", "photos"]},
        **with_config(verifySchedule="", verifyReadDataSubset=""),
        "metrics": {
            "port": 8080,
            "serviceMonitor": {"enabled": False, "interval": "30s", "labels": {"release": "x"}},
            "prometheusRule": {"enabled": False, "labels": {"a": "b"}, "selector": 'job="x"', "staleAfterHours": 2,
                               "for": "1h", "severity": "critical"},
            "grafanaDashboard": {"enabled": False, "labelKey": "dash", "labelValue": "yes", "annotations": {"f": "g"}},
            "pushgateway": {"url": ""},
        },
    }
    assert chart.render(off, name=RELEASE, namespace=NAMESPACE) == default
    assert chart.render(EXPECTED_DEFAULTS, name=RELEASE, namespace=NAMESPACE) == default
    # The daemon's files render nothing in cronjob mode.
    assert {path for path, text in default.items() if text.strip()} == {
        "s32s3/templates/cronjob.yaml",
        "s32s3/templates/NOTES.txt",
    }


def test_lint_passes_in_daemon_mode_with_everything_enabled() -> None:
    report = helm.lint(CHART_DIR, EVERYTHING, strict=True, namespace=NAMESPACE)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_the_service_monitor_scrapes_the_daemon_service(chart: helm.Chart) -> None:
    objects = render(chart, EVERYTHING)
    monitor = one(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["name"] == "prod-s32s3"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
    service = one(objects, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "1m"}]
    assert service["spec"]["ports"][0]["name"] == "metrics"


def test_the_service_monitor_interval(chart: helm.Chart) -> None:
    values = {**DAEMON, "metrics": {"serviceMonitor": {"enabled": True, "interval": ""}}}
    assert one(render(chart, values), "ServiceMonitor")["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics"}]
    values["metrics"]["serviceMonitor"]["interval"] = "30s"
    assert one(render(chart, values), "ServiceMonitor")["spec"]["endpoints"][0]["interval"] == "30s"


def test_extra_labels_do_not_replace_the_chart_labels(chart: helm.Chart) -> None:
    labels = {"app.kubernetes.io/instance": "other", "release": "kps"}
    values = {**DAEMON, "metrics": {"serviceMonitor": {"enabled": True, "labels": labels}}}
    monitor = one(render(chart, values), "ServiceMonitor")
    assert monitor["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
    assert monitor["metadata"]["labels"]["release"] == "kps"


def test_a_service_monitor_in_cronjob_mode_fails_the_render(chart: helm.Chart) -> None:
    with pytest.raises(helm.HelmRenderError, match="metrics.serviceMonitor.enabled needs mode=daemon"):
        render(chart, {"metrics": {"serviceMonitor": {"enabled": True}}})


def rules(rule: dict) -> dict[str, dict]:
    return {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\bs32s3_[a-z_]+", expr))


def assert_balanced(expr: str) -> None:
    """PromQL brackets pair up and strings close; no PromQL parser is among the test dependencies."""
    stack, pairs = [], {")": "(", "}": "{", "]": "["}
    for char in re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr):
        if char in "({[":
            stack.append(char)
        elif char in pairs:
            assert stack and stack.pop() == pairs[char], expr
    assert not stack, expr
    assert expr.count('"') % 2 == 0, expr


def test_the_prometheus_rule_alerts(chart: helm.Chart) -> None:
    rule = one(render(chart, EVERYTHING), "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    alerts = rules(rule)
    assert set(alerts) == {"S32S3BackupStale", "S32S3BackupFailed", "S32S3VerifyDamage"}
    scope = 'namespace="minio", job="prod-s32s3-metrics"'
    assert alerts["S32S3BackupStale"]["expr"] == (
        f"time() - s32s3_last_success_timestamp_seconds{{{scope}}} > {26 * 3600}"
    )
    assert alerts["S32S3BackupFailed"]["expr"] == f's32s3_last_run_status{{{scope}, status=~"failed|partial"}} == 1'
    assert alerts["S32S3VerifyDamage"]["expr"] == f"s32s3_last_verify_damaged_objects{{{scope}}} > 0"
    for name, alert in alerts.items():
        assert alert["for"] == "15m", name
        assert alert["labels"] == {"severity": "warning"}, name
        assert alert["annotations"]["summary"] and alert["annotations"]["description"], name
        # Prometheus' own templating reaches the rule untouched by Helm's.
        assert "{{ $labels.job }}" in alert["annotations"]["description"], name
        assert metric_names(alert["expr"]) <= METRICS, name
        assert_balanced(alert["expr"])


def test_the_prometheus_rule_settings_reach_the_alerts(chart: helm.Chart) -> None:
    values = {
        **DAEMON,
        "metrics": {
            "prometheusRule": {"enabled": True, "staleAfterHours": 50, "for": "1h", "severity": "critical",
                               "selector": 'cluster="a", job=~"s32s3.*"'}
        },
    }
    alerts = rules(one(render(chart, values), "PrometheusRule"))
    assert alerts["S32S3BackupStale"]["expr"] == (
        'time() - s32s3_last_success_timestamp_seconds{cluster="a", job=~"s32s3.*"} > 180000'
    )
    assert alerts["S32S3BackupFailed"]["expr"] == (
        's32s3_last_run_status{cluster="a", job=~"s32s3.*", status=~"failed|partial"} == 1'
    )
    assert "50 hours" in alerts["S32S3BackupStale"]["annotations"]["summary"]
    for alert in alerts.values():
        assert (alert["for"], alert["labels"]["severity"]) == ("1h", "critical")


def test_the_prometheus_rule_in_cronjob_mode_watches_the_pushgateway_group(chart: helm.Chart) -> None:
    values = {"metrics": {"prometheusRule": {"enabled": True}, "pushgateway": {"url": "http://pg.monitoring:9091"}}}
    objects = render(chart, values)
    assert kinds(objects) == ["CronJob", "PrometheusRule"]
    alerts = rules(one(objects, "PrometheusRule"))
    assert alerts["S32S3VerifyDamage"]["expr"] == 's32s3_last_verify_damaged_objects{job="s32s3"} > 0'
    assert alerts["S32S3BackupFailed"]["expr"] == 's32s3_last_run_status{job="s32s3", status=~"failed|partial"} == 1'


def test_the_pushgateway_url_reaches_the_backup_only(chart: helm.Chart) -> None:
    assert "S32S3_PUSHGATEWAY" not in env(workload(chart))
    values = {"metrics": {"pushgateway": {"url": "http://pushgateway.monitoring:9091"}}}
    assert env(workload(chart, values)) == {**DEFAULT_ENV, "S32S3_PUSHGATEWAY": "http://pushgateway.monitoring:9091"}
    # A restore pushes nothing.
    assert "S32S3_PUSHGATEWAY" not in env(workload(chart, {**values, "restore": {"enabled": True}}))


def test_a_pushgateway_in_daemon_mode_fails_the_render(chart: helm.Chart) -> None:
    with pytest.raises(helm.HelmRenderError, match="metrics.pushgateway.url is for mode=cronjob"):
        render(chart, {**DAEMON, "metrics": {"pushgateway": {"url": "http://pg:9091"}}})


def test_the_dashboard_config_map(chart: helm.Chart) -> None:
    configmap = one(render(chart, EVERYTHING), "ConfigMap")
    assert configmap["metadata"]["name"] == "prod-s32s3-dashboard"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "Backups"}
    assert list(configmap["data"]) == ["s32s3.json"]
    assert json.loads(configmap["data"]["s32s3.json"]) == DASHBOARD


def test_the_dashboard_label_is_configurable_and_works_in_cronjob_mode(chart: helm.Chart) -> None:
    values = {"metrics": {"grafanaDashboard": {"enabled": True, "labelKey": "dashboards", "labelValue": "s32s3"}}}
    objects = render(chart, values)
    assert kinds(objects) == ["ConfigMap", "CronJob"]
    labels = one(objects, "ConfigMap")["metadata"]["labels"]
    assert labels["dashboards"] == "s32s3"
    assert "grafana_dashboard" not in labels
    assert "annotations" not in one(objects, "ConfigMap")["metadata"]


def dashboard_exprs() -> list[str]:
    return [target["expr"] for panel in DASHBOARD["panels"] for target in panel.get("targets", [])]


def test_the_dashboard_panels_query_s32s3_metrics() -> None:
    assert DASHBOARD["panels"]
    for panel in DASHBOARD["panels"]:
        exprs = [target.get("expr", "") for target in panel.get("targets", [])]
        assert any(metric_names(expr) for expr in exprs), panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
    variable_queries = [v["query"]["query"] for v in DASHBOARD["templating"]["list"] if v["type"] == "query"]
    for expr in dashboard_exprs() + variable_queries:
        assert metric_names(expr) <= METRICS, expr
        assert_balanced(expr)


def test_the_dashboard_covers_the_issue_metrics() -> None:
    used = set().union(*(metric_names(expr) for expr in dashboard_exprs()))
    assert {
        "s32s3_last_success_timestamp_seconds",
        "s32s3_last_run_status",
        "s32s3_last_run_duration_seconds",
        "s32s3_last_run_objects",
        "s32s3_last_run_bytes",
        "s32s3_snapshots",
        "s32s3_backup_bucket_bytes",
        "s32s3_snapshot_objects",
        "s32s3_snapshot_bytes",
        "s32s3_last_verify_objects",
        "s32s3_last_verify_damaged_objects",
    } <= used


def test_the_dashboard_picks_its_prometheus_with_a_datasource_variable() -> None:
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    # Every query is scoped by the release variables, so one dashboard serves several releases.
    for expr in dashboard_exprs():
        assert 'namespace=~"$namespace", job=~"$job"' in expr, expr
    ids = [panel["id"] for panel in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))


def test_notes_in_daemon_mode(chart: helm.Chart) -> None:
    notes = chart.render(EVERYTHING, name=RELEASE, namespace=NAMESPACE)["s32s3/templates/NOTES.txt"]
    assert "logs -f deploy/prod-s32s3-daemon" in notes
    assert "port-forward svc/prod-s32s3-metrics 9090:9090" in notes
    assert "http://localhost:9090/metrics" in notes
    assert 'verifies the newest complete snapshot on schedule "0 5 * * 0"' in notes
    assert "ServiceMonitor prod-s32s3" in notes
    assert "ConfigMap prod-s32s3-dashboard" in notes
    values = {"metrics": {"pushgateway": {"url": "http://pg:9091"}}}
    notes = chart.render(values, name=RELEASE, namespace=NAMESPACE)["s32s3/templates/NOTES.txt"]
    assert "pushes its metrics to the Pushgateway http://pg:9091" in notes
    assert "Monitoring" not in notes


# --- the values schema ------------------------------------------------------------------------------------

# A values file with a wrong type, and the path Helm's schema error must name. Together they cover every
# parameter of the table.
WRONG_VALUES = [
    ("config:\n  expirationDays: seven\n", "/config/expirationDays"),
    ("config:\n  expirationDays: 0\n", "/config/expirationDays"),
    ("config:\n  expirationDays: 1.5\n", "/config/expirationDays"),
    ("restore:\n  enabled: 'yes'\n", "/restore/enabled"),
    ("restore:\n  at: yesterday\n", "/restore/at"),
    ("restore:\n  at: 2025-01-31\n", "/restore/at"),
    ("restore:\n  at: '2025-01-31 23:00:00Z'\n", "/restore/at"),
    ("restore:\n  at: '2025-01-31T23:00:00'\n", "/restore/at"),  # no offset: ambiguous
    ("image:\n  name: 5\n", "/image/name"),
    ("image:\n  pullPolicy: Sometimes\n", "/image/pullPolicy"),
    ("image:\n  tag: 1.2\n", "/image/tag"),
    ("image:\n  registry: x\n", "/image"),
    ("imagePullSecrets: registry\n", "/imagePullSecrets"),
    ("imagePullSecrets: [{secret: registry}]\n", "/imagePullSecrets/0"),
    ("nameOverride: [a]\n", "/nameOverride"),
    ("fullnameOverride: {a: 1}\n", "/fullnameOverride"),
    ("backup:\n  args: backup\n", "/backup/args"),
    ("backup:\n  args: []\n", "/backup/args"),
    ("backup:\n  args: [backup, 3]\n", "/backup/args/1"),
    ("config:\n  schedule: 5\n", "/config/schedule"),
    ("config:\n  schedule: every minute\n", "/config/schedule"),
    ("config:\n  backupBucket: ''\n", "/config/backupBucket"),
    ("config:\n  backupBucket: [a]\n", "/config/backupBucket"),
    ("config:\n  extraEnv: [A=1]\n", "/config/extraEnv"),
    ("config:\n  extraEnv: {A: [1]}\n", "/config/extraEnv/A"),
    ("config:\n  extraEnv: {A: {valueFrom: x}}\n", "/config/extraEnv/A"),
    ("config:\n  source:\n    endpoint: http://minio:9000\n", "/config/source/endpoint"),
    ("config:\n  destination:\n    access_key_id: {value: [a]}\n", "/config/destination/access_key_id/value"),
    ("config:\n  destination:\n    secret_access_key: {valueFrom: {secretKeyRef: {name: s}}}\n",
     "/config/destination/secret_access_key/valueFrom/secretKeyRef"),
    ("config:\n  destination:\n    region: {valueFrom: {secretRef: {name: s}}}\n",
     "/config/destination/region/valueFrom"),
    ("config:\n  destination:\n    provider: {name: minio}\n", "/config/destination/provider"),
    ("config:\n  source:\n    region: {value: a, valueFrom: {secretKeyRef: {name: s, key: k}}}\n",
     "/config/source/region"),
    ("config:\n  source:\n    bucket: {value: a}\n", "/config/source"),
    ("config:\n  crypt:\n    password: hunter2\n", "/config/crypt/password"),
    ("config:\n  crypt:\n    password2: {value: {a: 1}}\n", "/config/crypt/password2/value"),
    ("config:\n  crypt:\n    password3: {value: a}\n", "/config/crypt"),
    ("config:\n  rclone: [transfers]\n", "/config/rclone"),
    ("config:\n  rclone:\n    transfers: [4]\n", "/config/rclone/transfers"),
    ("config:\n  retention: 7\n", "/config"),
    ("podAnnotations: {a: 1}\n", "/podAnnotations/a"),
    ("podLabels: [a]\n", "/podLabels"),
    ("podSecurityContext: []\n", "/podSecurityContext"),
    ("resources: {cpu: 1}\n", "/resources"),
    ("nodeSelector: {zone: 1}\n", "/nodeSelector/zone"),
    ("tolerations: {key: a}\n", "/tolerations"),
    ("affinity: []\n", "/affinity"),
    ("podAnnotation: {a: b}\n", ""),  # a typo of a top-level name
    ("mode: deployment\n", "/mode"),
    ("mode: Daemon\n", "/mode"),
    ("daemon:\n  args: [backup]\n", "/daemon/args/0"),
    ("daemon:\n  args: []\n", "/daemon/args"),
    ("daemon:\n  args: [daemon, 3]\n", "/daemon/args/1"),
    ("daemon:\n  schedule: x\n", "/daemon"),
    ("config:\n  verifySchedule: weekly\n", "/config/verifySchedule"),
    ("config:\n  verifySchedule: 5\n", "/config/verifySchedule"),
    ("config:\n  verifyReadDataSubset: 101\n", "/config/verifyReadDataSubset"),
    ("config:\n  verifyReadDataSubset: -1\n", "/config/verifyReadDataSubset"),
    ("config:\n  verifyReadDataSubset: five\n", "/config/verifyReadDataSubset"),
    ("metrics:\n  port: 0\n", "/metrics/port"),
    ("metrics:\n  port: '9090'\n", "/metrics/port"),
    ("metrics:\n  port: 70000\n", "/metrics/port"),
    ("metrics:\n  serviceMonitor: true\n", "/metrics/serviceMonitor"),
    ("metrics:\n  serviceMonitor:\n    enabled: 'yes'\n", "/metrics/serviceMonitor/enabled"),
    ("metrics:\n  serviceMonitor:\n    interval: 60\n", "/metrics/serviceMonitor/interval"),
    ("metrics:\n  serviceMonitor:\n    interval: a minute\n", "/metrics/serviceMonitor/interval"),
    ("metrics:\n  serviceMonitor:\n    labels: {release: 1}\n", "/metrics/serviceMonitor/labels/release"),
    ("metrics:\n  prometheusRule:\n    enabled: 1\n", "/metrics/prometheusRule/enabled"),
    ("metrics:\n  prometheusRule:\n    labels: [a]\n", "/metrics/prometheusRule/labels"),
    ("metrics:\n  prometheusRule:\n    selector: '{job=\"a\"}'\n", "/metrics/prometheusRule/selector"),
    ("metrics:\n  prometheusRule:\n    staleAfterHours: 1.5\n", "/metrics/prometheusRule/staleAfterHours"),
    ("metrics:\n  prometheusRule:\n    staleAfterHours: 0\n", "/metrics/prometheusRule/staleAfterHours"),
    ("metrics:\n  prometheusRule:\n    for: 15\n", "/metrics/prometheusRule/for"),
    ("metrics:\n  prometheusRule:\n    severity: ''\n", "/metrics/prometheusRule/severity"),
    ("metrics:\n  prometheusRule:\n    staleAfter: 26\n", "/metrics/prometheusRule"),
    ("metrics:\n  grafanaDashboard:\n    enabled: 'true'\n", "/metrics/grafanaDashboard/enabled"),
    ("metrics:\n  grafanaDashboard:\n    labelKey: ''\n", "/metrics/grafanaDashboard/labelKey"),
    ("metrics:\n  grafanaDashboard:\n    labelValue: 1\n", "/metrics/grafanaDashboard/labelValue"),
    ("metrics:\n  grafanaDashboard:\n    annotations: {grafana_folder: 1}\n",
     "/metrics/grafanaDashboard/annotations/grafana_folder"),
    ("metrics:\n  pushgateway:\n    url: pushgateway:9091\n", "/metrics/pushgateway/url"),
    ("metrics:\n  pushgateway: http://pg:9091\n", "/metrics/pushgateway"),
    ("metrics:\n  serviceMonitors: {}\n", "/metrics"),
    ("backup:\n  shards: 0\n", "/backup/shards"),
    ("backup:\n  shards: -2\n", "/backup/shards"),
    ("backup:\n  shards: 1.5\n", "/backup/shards"),
    ("backup:\n  shards: '3'\n", "/backup/shards"),
    ("backup:\n  shards: three\n", "/backup/shards"),
    ("backup:\n  shards: [3]\n", "/backup/shards"),
]


@pytest.mark.parametrize(
    ("values_file", "path"), WRONG_VALUES, ids=[v.strip().replace("\n", " ") for v, _ in WRONG_VALUES]
)
def test_a_values_file_with_a_wrong_type_is_rejected(chart: helm.Chart, values_file: str, path: str) -> None:
    values = helm.values_from_yaml(values_file)  # what `helm install -f FILE` reads
    with pytest.raises(helm.HelmValuesError) as failure:
        render(chart, values)
    assert f"at '{path}'" in str(failure.value), str(failure.value)
    with pytest.raises(helm.HelmValuesError):
        chart.validate_schema(values)
    report = helm.lint(CHART_DIR, values)
    assert report["errors"], "helm lint accepted a wrong type"


def schema_node(schema: dict, name: str) -> dict:
    node = schema
    for part in name.split(".") if name else []:
        node = node["properties"][part]
        if "$ref" in node:
            node = schema["definitions"][node["$ref"].rsplit("/", 1)[1]]
    return node


def test_the_schema_types_every_parameter(chart: helm.Chart) -> None:
    schema = chart.schema
    assert schema is not None
    for name in leaf_parameters(chart.values):
        node = schema_node(schema, name)
        assert "type" in node or "anyOf" in node, f"{name} has no type in values.schema.json"
    # Unknown names (typos) are rejected everywhere but in the free-form maps (extraEnv, rclone, Kubernetes objects).
    for name in ["", "image", "backup", "daemon", "restore", "config", "config.source", "config.destination",
                 "config.crypt", "metrics", "metrics.serviceMonitor", "metrics.prometheusRule",
                 "metrics.grafanaDashboard", "metrics.pushgateway"]:
        assert schema_node(schema, name)["additionalProperties"] is False, name


# --- documentation ----------------------------------------------------------------------------------------

README = (CHART_DIR / "README.md").read_text()


def test_readme_documents_every_parameter(chart: helm.Chart) -> None:
    documented = set(re.findall(r"^\| `([A-Za-z0-9_.-]+)` \|", README, flags=re.MULTILINE))
    parameters = set(leaf_parameters(chart.values))
    assert len(parameters) == 33 + 19 + 1  # issue 7's table, then issue 16's, then issue 14's
    assert parameters - documented == set(), "parameters missing from README.md"
    rclone_documented = {name for name in documented if name in RCLONE_ENV}
    assert rclone_documented == set(RCLONE_ENV), "rclone options missing from README.md"
    assert documented - parameters - set(RCLONE_ENV) == set(), "README.md documents parameters that do not exist"


def test_values_yaml_documents_every_parameter(chart: helm.Chart) -> None:
    values_yaml = (CHART_DIR / "values.yaml").read_text()
    params = set(re.findall(r"^\s*## @param ([A-Za-z0-9_.]+)", values_yaml, flags=re.MULTILINE))
    assert params == set(leaf_parameters(chart.values))


README_EXAMPLES = re.findall(r"```yaml\n(.*?)```", README, flags=re.DOTALL)


def test_readme_has_examples() -> None:
    assert len(README_EXAMPLES) >= 4


def expected_kinds(values: dict) -> list[str]:
    """The objects values must render: the restore Job alone, or the mode's workload and what metrics enables."""
    if values.get("restore", {}).get("enabled"):
        return ["Job"]
    daemon = values.get("mode") == "daemon"
    metrics = values.get("metrics", {})
    enabled = {name: metrics.get(name, {}).get("enabled", False) for name in MONITORING_KINDS}
    return sorted(
        (["Deployment", "Service"] if daemon else ["CronJob"])
        + [kind for name, kind in MONITORING_KINDS.items() if enabled[name]]
    )


@pytest.mark.parametrize("example", README_EXAMPLES, ids=[f"example{i}" for i in range(len(README_EXAMPLES))])
def test_readme_examples_render(chart: helm.Chart, example: str) -> None:
    values = helm.values_from_yaml(example)
    assert kinds(render(chart, values)) == expected_kinds(values)
    assert helm.lint(CHART_DIR, values, strict=True)["errors"] == []


def test_readme_has_a_daemon_example_with_all_monitoring(chart: helm.Chart) -> None:
    daemon = next(example for example in README_EXAMPLES if "mode: daemon" in example)
    objects = render(chart, helm.values_from_yaml(daemon))
    assert kinds(objects) == ["ConfigMap", "Deployment", "PrometheusRule", "Service", "ServiceMonitor"]
    assert one(objects, "ServiceMonitor")["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert env(one(objects, "Deployment"))["S32S3_VERIFY_SCHEDULE"] == "0 5 * * 0"


def test_readme_minio_example_uses_the_minio_secrets(chart: helm.Chart) -> None:
    minio = next(example for example in README_EXAMPLES if "secretKeyRef: {name: minio, key: root-user}" in example)
    values = helm.values_from_yaml(minio)
    cronjob = workload(chart, values)
    variables = env(cronjob)
    assert variables["S32S3_SOURCE_ACCESS_KEY_ID"] == secret_ref("minio", "root-user")
    assert variables["S32S3_SOURCE_SECRET_ACCESS_KEY"] == secret_ref("minio", "root-password")
    assert variables["S32S3_CRYPT_PASSWORD"] == secret_ref("s32s3-crypt", "password")
    assert variables["S32S3_PART_SIZE"] == "64Mi"
    assert cronjob["spec"]["schedule"] == "0 2 * * *"

    # The restore example on top of it: same settings, a Job instead of the CronJob.
    restore = next(example for example in README_EXAMPLES if "restore:" in example)
    merged = copy.deepcopy(values)
    merged.update(helm.values_from_yaml(restore))
    job = workload(chart, merged)
    assert job["kind"] == "Job"
    assert container(job)["args"] == ["restore", "--at", "2025-01-31T23:00:00Z"]
    assert env(job) == variables


def test_readme_shards_example(chart: helm.Chart) -> None:
    example = next(example for example in README_EXAMPLES if "shards:" in example)
    cronjob = workload(chart, helm.values_from_yaml(example))
    spec = job_spec(cronjob)
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 4, 4)
    assert env(cronjob)["S32S3_SHARD"] == "$(JOB_COMPLETION_INDEX)/4"
    # The anti-affinity selects the backup pods, so it keeps the shards apart.
    [term] = pod_spec(cronjob)["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    selector = term["podAffinityTerm"]["labelSelector"]["matchLabels"]
    assert selector.items() <= pod_template(cronjob)["metadata"]["labels"].items()


def test_the_packaged_chart_leaves_the_tests_out(tmp_path: Path) -> None:
    archive = helm.package(CHART_DIR, destination=tmp_path)
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {
        "s32s3/Chart.yaml",
        "s32s3/values.schema.json",
        "s32s3/README.md",
        "s32s3/templates/cronjob.yaml",
        "s32s3/templates/deployment.yaml",
        # The dashboard is read with .Files.Get: a packaged chart without it would render an empty ConfigMap.
        "s32s3/dashboards/s32s3.json",
    } <= names
    assert not any("/tests/" in name or "__pycache__" in name for name in names), names
    with helm.Chart.load(archive) as packaged:
        assert packaged.values == EXPECTED_DEFAULTS
        configmap = one(render(packaged, {"metrics": {"grafanaDashboard": {"enabled": True}}}), "ConfigMap")
        assert json.loads(configmap["data"]["s32s3.json"]) == DASHBOARD


def test_notes(chart: helm.Chart) -> None:
    notes = chart.render(None, name=RELEASE, namespace=NAMESPACE)["s32s3/templates/NOTES.txt"]
    assert "create job --from=cronjob/prod-s32s3-backup" in notes
    assert "config.crypt.password is not set" in notes
    values = {"restore": {"enabled": True}, **with_config(crypt={"password": {"valueFrom": secret_ref("c", "p")}})}
    notes = chart.render(values, name=RELEASE, namespace=NAMESPACE)["s32s3/templates/NOTES.txt"]
    assert "logs -f job/prod-s32s3-restore" in notes
    assert "not set" not in notes
