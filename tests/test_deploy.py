"""deploy/: the Kubernetes manifests, checked offline.

Every object is validated against the Kubernetes JSON schemas that kubernetes-validate ships (strict:
an unknown or misspelt field fails), KEDA's objects against the schema below, and everything is
cross-checked with the settings, docker-compose.yml, the Dockerfile and the Procfile: env names are
settings, references resolve, commands and images are the compose ones, the worker asks for one GPU, the
sweeper is one, and KEDA watches the list Celery publishes to.
"""
from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
NAMESPACE = "portraits"
# The oldest Kubernetes the manifests are meant for, and the newest schemas the package has.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
SETTINGS_NAMES = {name.upper() for name in Settings.model_fields}
# Each Secret the manifests use, and the example file that documents its keys (no real values).
SECRET_EXAMPLES = {"portraits-secrets": DEPLOY / "secrets.env.example",
                   "portraits-keda-redis": DEPLOY / "keda-redis.env.example"}
# Deployment or Job → the docker-compose.yml service that runs the same process.
COMPOSE_TWIN = {"portraits-api": "api", "portraits-worker": "worker", "portraits-sweeper": "sweeper",
                "portraits-webhooks": "webhooks", "portraits-migrate": "migrate"}
# Settings that say where things are: they differ between compose and a cluster by design.
LOCATION = {"DATABASE_URL", "REDIS_URL", "S3_ENDPOINT", "S3_SECURE", "S3_PUBLIC_ENDPOINT", "S3_PUBLIC_SECURE",
            "S3_ACCESS_KEY", "S3_SECRET_KEY", "SECRET_KEY", "CORS_ORIGINS", "TORCH_THREADS"}

NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63}
DIGITS = {"type": "string", "pattern": r"^[0-9]+$"}  # KEDA trigger metadata values are strings
METADATA = {"type": "object", "required": ["name", "namespace"], "additionalProperties": False,
            "properties": {"name": NAME, "namespace": NAME,
                           "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                           "annotations": {"type": "object", "additionalProperties": {"type": "string"}}}}


def strict(properties: dict, required: list[str]) -> dict:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


# The fields of KEDA 2.x's ScaledObject and TriggerAuthentication these manifests may use (the CRDs in
# kedacore/keda config/crd/bases, and the redis scaler's metadata). Kubernetes validates a CRD's objects
# only once KEDA is installed; this catches a misspelt field before that.
REDIS_TRIGGER = strict({
    "type": {"const": "redis"},
    "name": {"type": "string"},
    "metricType": {"enum": ["AverageValue", "Value"]},
    "metadata": strict({"listName": {"type": "string", "minLength": 1}, "listLength": DIGITS,
                        "activationListLength": DIGITS, "databaseIndex": DIGITS,
                        "enableTLS": {"enum": ["true", "false"]}}, ["listName", "listLength"]),
    "authenticationRef": strict({"name": NAME, "kind": {"const": "TriggerAuthentication"}}, ["name"]),
}, ["type", "metadata", "authenticationRef"])
KEDA_SCHEMAS = {
    "ScaledObject": strict({
        "apiVersion": {"const": "keda.sh/v1alpha1"}, "kind": {"const": "ScaledObject"}, "metadata": METADATA,
        "spec": strict({
            "scaleTargetRef": strict({"name": NAME, "kind": {"const": "Deployment"},
                                      "apiVersion": {"const": "apps/v1"}}, ["name"]),
            "pollingInterval": {"type": "integer", "minimum": 1},
            "cooldownPeriod": {"type": "integer", "minimum": 0},
            "minReplicaCount": {"type": "integer", "minimum": 0},
            "maxReplicaCount": {"type": "integer", "minimum": 1},
            # behavior is the HPA's own type: test_keda_scale_down_is_a_valid_hpa_behavior checks it.
            "advanced": strict({"restoreToOriginalReplicaCount": {"type": "boolean"},
                                "horizontalPodAutoscalerConfig": strict({"behavior": {"type": "object"}}, [])},
                               []),
            "triggers": {"type": "array", "minItems": 1, "items": REDIS_TRIGGER},
        }, ["scaleTargetRef", "triggers", "minReplicaCount", "maxReplicaCount", "cooldownPeriod"]),
    }, ["apiVersion", "kind", "metadata", "spec"]),
    "TriggerAuthentication": strict({
        "apiVersion": {"const": "keda.sh/v1alpha1"}, "kind": {"const": "TriggerAuthentication"},
        "metadata": METADATA,
        "spec": strict({"secretTargetRef": {"type": "array", "minItems": 1, "items": strict(
            {"parameter": {"enum": ["address", "host", "port", "username", "password"]}, "name": NAME,
             "key": {"type": "string", "minLength": 1}}, ["parameter", "name", "key"])}}, ["secretTargetRef"]),
    }, ["apiVersion", "kind", "metadata", "spec"]),
}


def manifest_files() -> list[str]:
    return yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())["resources"]


def load_objects() -> list[tuple[str, dict]]:
    return [(name, doc) for name in manifest_files()
            for doc in yaml.safe_load_all((DEPLOY / name).read_text()) if doc]


OBJECTS = load_objects()
KEDA_OBJECTS = [(name, obj) for name, obj in OBJECTS if obj["apiVersion"].startswith("keda.sh/")]
CORE_OBJECTS = [(name, obj) for name, obj in OBJECTS if (name, obj) not in KEDA_OBJECTS]


def ids(objects) -> list[str]:
    return [f"{name}:{obj['kind']}/{obj['metadata']['name']}" for name, obj in objects]


def one(kind: str, name: str) -> dict:
    [obj] = [obj for _, obj in OBJECTS if obj["kind"] == kind and obj["metadata"]["name"] == name]
    return obj


def pod_specs() -> dict[str, dict]:
    """Deployment/Job name → its pod spec."""
    return {obj["metadata"]["name"]: obj["spec"]["template"]["spec"] for _, obj in OBJECTS
            if obj["kind"] in ("Deployment", "Job")}


def containers(spec: dict) -> list[dict]:
    return spec.get("initContainers", []) + spec["containers"]


def main_container(name: str) -> dict:
    [container] = pod_specs()[name]["containers"]  # one process per pod
    return container


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines as `kubectl create secret --from-env-file` reads them (comments skipped)."""
    lines = (line.strip() for line in path.read_text().splitlines())
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def environment(container: dict) -> dict[str, str]:
    """What the container's process sees: ConfigMap and example Secret (envFrom), then its own env."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(one("ConfigMap", source["configMapRef"]["name"])["data"])
        else:
            env.update(read_env_file(SECRET_EXAMPLES[source["secretRef"]["name"]]))
    for var in container.get("env", []):
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        env[var["name"]] = read_env_file(SECRET_EXAMPLES[ref["name"]])[ref["key"]] if ref else var["value"]
    return env


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def compose_env(service: dict) -> dict[str, str]:
    """A compose service's variables with ${VAR:-default} resolved to the default."""
    env = service.get("environment") or {}
    return {key: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value)) for key, value in env.items()}


# --- the schemas ------------------------------------------------------------------------------------

def test_kustomization_applies_every_manifest():
    on_disk = {path.name for path in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(manifest_files()) == on_disk
    assert not list(DEPLOY.glob("*.yml")) and not list(DEPLOY.glob("*.json"))  # nothing left out by name


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("obj", [obj for _, obj in CORE_OBJECTS], ids=ids(CORE_OBJECTS))
def test_kubernetes_objects_match_the_kubernetes_schemas(obj, version):
    kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("obj", [obj for _, obj in KEDA_OBJECTS], ids=ids(KEDA_OBJECTS))
def test_keda_objects_match_their_schema(obj):
    jsonschema.Draft202012Validator(KEDA_SCHEMAS[obj["kind"]]).validate(obj)


def test_the_validators_reject_mistakes():
    deployment = yaml.safe_load((DEPLOY / "sweeper.yaml").read_text())
    deployment["spec"]["replica"] = 1  # misspelt
    with pytest.raises(kubernetes_validate.ValidationError, match="replica"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)
    scaled = copy.deepcopy(one("ScaledObject", "portraits-worker"))
    scaled["spec"]["triggers"][0]["metadata"]["listLength"] = 4  # must be a string
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaled, KEDA_SCHEMAS["ScaledObject"])


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_keda_scale_down_is_a_valid_hpa_behavior(version):
    # KEDA copies `behavior` into the HorizontalPodAutoscaler it creates: validate it as part of one.
    spec = one("ScaledObject", "portraits-worker")["spec"]
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "keda"},
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "worker"},
                    "minReplicas": max(spec["minReplicaCount"], 1), "maxReplicas": spec["maxReplicaCount"],
                    "behavior": spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]}}
    kubernetes_validate.validate(hpa, version, strict=True)


def test_kustomize_renders_the_same_objects_with_one_image():
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl not installed (kustomize is built into it)")
    rendered = list(yaml.safe_load_all(subprocess.run([kubectl, "kustomize", str(DEPLOY)], check=True,
                                                      capture_output=True, text=True).stdout))
    assert sorted(ids([("", o) for o in rendered])) == sorted(ids([("", o) for _, o in OBJECTS]))
    [image] = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())["images"]
    images = {c["image"] for o in rendered if "template" in o.get("spec", {})
              for c in containers(o["spec"]["template"]["spec"])}
    assert images == {f"{image['newName']}:{image['newTag']}"}


# --- cross-references -------------------------------------------------------------------------------

def test_everything_is_in_one_namespace():
    assert one("Namespace", NAMESPACE)
    assert {obj["metadata"].get("namespace") for _, obj in OBJECTS if obj["kind"] != "Namespace"} == {NAMESPACE}


def test_every_env_name_is_a_setting():
    names = set(one("ConfigMap", "portraits-config")["data"])
    names |= set(read_env_file(SECRET_EXAMPLES["portraits-secrets"]))
    names |= {var["name"] for spec in pod_specs().values() for c in containers(spec) for var in c.get("env", [])}
    assert not names - SETTINGS_NAMES, f"not settings: {sorted(names - SETTINGS_NAMES)}"


def test_every_reference_resolves():
    for spec in pod_specs().values():
        for container in containers(spec):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert one("ConfigMap", source["configMapRef"]["name"])
                else:
                    assert source["secretRef"]["name"] in SECRET_EXAMPLES
            for var in container.get("env", []):
                if ref := var.get("valueFrom", {}).get("secretKeyRef"):
                    assert ref["key"] in read_env_file(SECRET_EXAMPLES[ref["name"]]), ref
    for ref in one("TriggerAuthentication", "portraits-redis")["spec"]["secretTargetRef"]:
        assert ref["key"] in read_env_file(SECRET_EXAMPLES[ref["name"]]), ref


def test_example_secrets_hold_no_secret():
    for path in SECRET_EXAMPLES.values():
        for key, value in read_env_file(path).items():
            if "://" in value:
                assert urlsplit(value).password == "CHANGE-ME", key
            elif re.search(r"KEY|password", key):
                assert value == "CHANGE-ME", key


@pytest.mark.parametrize("name", COMPOSE_TWIN)
def test_each_process_gets_valid_settings(name):
    settings = Settings(**{key.lower(): value for key, value in environment(main_container(name)).items()})
    assert settings.task_soft_time_limit < settings.task_time_limit < settings.broker_visibility_timeout


@pytest.mark.parametrize("name", COMPOSE_TWIN)
def test_each_process_is_configured_like_its_compose_twin(compose, name):
    twin = compose_env(compose[COMPOSE_TWIN[name]])
    env = environment(main_container(name))
    assert set(twin) <= set(env), f"{name} lacks what compose gives it: {sorted(set(twin) - set(env))}"
    differ = {key for key in twin if key not in LOCATION and twin[key] != env[key]}
    assert not differ, f"{name} differs from compose in {sorted(differ)}"


@pytest.mark.parametrize("name", COMPOSE_TWIN)
def test_each_process_runs_the_compose_command_and_image(compose, name):
    container = main_container(name)
    assert container["command"] == compose[COMPOSE_TWIN[name]]["command"]
    assert container["image"] == compose[COMPOSE_TWIN[name]]["image"]
    for init in pod_specs()[name].get("initContainers", []):
        assert init["image"] == container["image"]
    [image] = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())["images"]
    assert container["image"].split(":")[0] == image["name"]


def test_commands_match_the_procfile_and_the_dockerfile():
    procfile = dict(line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip())
    for process in ("worker", "sweeper", "webhooks"):
        words = [w for w in shlex.split(procfile[process]) if not re.match(r"^\w+=", w)]  # less VAR=… prefixes
        command = main_container(f"portraits-{process}")["command"]
        assert command[:len(words)] == words, process  # compose may add flags (e.g. -E), never drop one
    dockerfile = (ROOT / "Dockerfile").read_text()
    cmd = json.loads(re.search(r"^CMD (\[.*?\])$", dockerfile.replace("\\\n", ""), re.MULTILINE).group(1))
    assert main_container("portraits-api")["command"] == cmd
    uid = int(re.search(r"useradd .*--uid (\d+)", dockerfile).group(1))
    for spec in pod_specs().values():
        assert spec["securityContext"]["runAsNonRoot"] and spec["securityContext"]["runAsUser"] == uid


# A Kubernetes quantity ("500m", "6Gi", 1); the JSON schemas accept any string, e.g. "6GB".
QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)(([KMGTPE]i)|[numkMGTPE]|[eE][+-]?\d+)?$")


def test_every_container_is_sized_and_unprivileged():
    for name, spec in pod_specs().items():
        assert spec["automountServiceAccountToken"] is False, name
        for container in containers(spec):
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"], name
            for value in [*resources["requests"].values(), *resources["limits"].values()]:
                assert QUANTITY.match(str(value)), (name, value)
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_selectors_match_pod_labels():
    for _, obj in OBJECTS:
        if obj["kind"] == "Deployment":
            labels = obj["spec"]["template"]["metadata"]["labels"]
            assert obj["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = one("Service", "portraits-api")
    api = one("Deployment", "portraits-api")
    assert service["spec"]["selector"].items() <= api["spec"]["template"]["metadata"]["labels"].items()
    [port] = main_container("portraits-api")["ports"]
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]


def test_api_probes_and_port():
    api = main_container("portraits-api")
    [port] = api["ports"]
    bind = api["command"][api["command"].index("-b") + 1]
    assert bind == f"0.0.0.0:{port['containerPort']}"
    assert api["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    assert api["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    assert one("Deployment", "portraits-api")["spec"]["replicas"] >= 2


@pytest.mark.parametrize("name", ["portraits-worker", "portraits-sweeper", "portraits-webhooks"])
def test_metrics_port_is_the_one_the_process_serves(name):
    container = main_container(name)
    [port] = container["ports"]
    assert port["name"] == "metrics" and port["containerPort"] == int(environment(container)["METRICS_PORT"])
    assert environment(container)["METRICS_ADDR"] == "0.0.0.0"  # reachable from outside the pod


def test_worker_is_one_solo_process_on_one_gpu():
    deployment = one("Deployment", "portraits-worker")
    worker = main_container("portraits-worker")
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "--pool solo --concurrency 1" in " ".join(worker["command"])
    env = environment(worker)
    assert env["MODEL_DEVICE"] == "cuda"
    assert int(env["TORCH_THREADS"]) == int(worker["resources"]["requests"]["cpu"])
    # A scaled-in or rolled pod finishes its task before it is killed (warm shutdown on SIGTERM).
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > int(env["TASK_TIME_LIMIT"]), "SIGKILL would cut tasks short"
    # KEDA owns the replica count; a number here would reset it on every apply.
    assert "replicas" not in deployment["spec"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0  # no spare GPU needed


def test_exactly_one_sweeper():
    sweeper = one("Deployment", "portraits-sweeper")
    assert sweeper["spec"]["replicas"] == 1
    assert sweeper["spec"]["strategy"] == {"type": "Recreate"}  # never two during a rollout
    targets = {obj["spec"]["scaleTargetRef"]["name"] for _, obj in OBJECTS if obj["kind"] == "ScaledObject"}
    assert targets == {"portraits-worker"}


def test_migration_job_runs_alembic_with_the_database_url_only():
    job = one("Job", "portraits-migrate")
    migrate = main_container("portraits-migrate")
    assert migrate["command"] == ["alembic", "upgrade", "head"]
    assert [var["name"] for var in migrate["env"]] == ["DATABASE_URL"] and "envFrom" not in migrate
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_every_deployment_waits_for_the_schema_the_same_way():
    inits = [spec.get("initContainers") for name, spec in pod_specs().items() if name != "portraits-migrate"]
    assert all(init == inits[0] for init in inits) and [c["name"] for c in inits[0]] == ["wait-for-schema"]


def test_keda_watches_the_list_celery_publishes_to():
    from shared.queue import make_celery
    from worker.sweeper import broker_queue_length

    trigger = one("ScaledObject", "portraits-worker")["spec"]["triggers"][0]
    queue = make_celery(Settings()).conf.task_default_queue
    assert trigger["metadata"]["listName"] == queue
    assert broker_queue_length.__defaults__ == (queue,)  # the sweeper reads the same list
    redis_url = urlsplit(read_env_file(SECRET_EXAMPLES["portraits-secrets"])["REDIS_URL"])
    assert trigger["metadata"]["databaseIndex"] == redis_url.path.strip("/")
    assert trigger["authenticationRef"]["name"] == "portraits-redis"
    keda = read_env_file(SECRET_EXAMPLES["portraits-keda-redis"])
    assert keda["address"] == f"{redis_url.hostname}:{redis_url.port}"
    assert keda["password"] == redis_url.password
    spec = one("ScaledObject", "portraits-worker")["spec"]
    assert spec["scaleTargetRef"]["name"] == "portraits-worker"
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]


# --- against the real services ----------------------------------------------------------------------

def test_a_published_job_lengthens_that_list():
    import redis

    from shared.queue import make_celery, publish_upscale
    from tests.conftest import leased_redis_db

    listname = one("ScaledObject", "portraits-worker")["spec"]["triggers"][0]["metadata"]["listName"]
    with leased_redis_db() as url:  # a database of its own: no worker of another test consumes from it
        client = redis.Redis.from_url(url)
        publish_upscale(make_celery(Settings(redis_url=url)), uuid.uuid4())
        publish_upscale(make_celery(Settings(redis_url=url)), uuid.uuid4())
        assert client.llen(listname) == 2
        client.close()


def run_wait_for_schema(database_url: str) -> subprocess.Popen:
    [init] = pod_specs()["portraits-api"]["initContainers"]
    assert init["command"][:2] == ["python", "-c"]
    return subprocess.Popen([sys.executable, "-c", init["command"][2]], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={"DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"})


def test_wait_for_schema_passes_a_migrated_database(database_url):
    process = run_wait_for_schema(database_url)
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 0 and out == ""


def test_wait_for_schema_waits_while_the_schema_is_missing(database_url):
    absent = database_url.rsplit("/", 1)[0] + f"/portraits_absent_{uuid.uuid4().hex[:8]}"
    process = run_wait_for_schema(absent)
    try:
        line = process.stdout.readline()  # printed before each 5 s wait
        assert "cannot use database portraits_absent_" in line
        assert process.poll() is None  # still waiting, never exits into a crash loop
    finally:
        process.kill()
        process.communicate()
