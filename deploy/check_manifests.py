"""Checks the rendered manifests for what the schemas cannot see: the sharding contract and the
deployment rules (GPU, retries, security, resources). Usage: check_manifests.py RENDERED.yaml, or
check_manifests.py --serve RENDERED.yaml for the server (k8s/serve, k8s/serve-gpu).
Prints one line per problem and exits 1 if there is any."""

import sys

import yaml

SHARD_ARG = "--shard=$(JOB_COMPLETION_INDEX)/$(SHARDS)"


def main(path: str) -> int:
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    objs = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    problems: list[str] = []

    def need(cond: bool, what: str) -> None:
        if not cond:
            problems.append(what)

    config = next((d for d in docs if d["kind"] == "ConfigMap"
                   and d["metadata"]["name"].startswith("oc-config")), None)
    extract, train = objs.get(("Job", "oc-extract")), objs.get(("Job", "oc-train"))
    pvc = objs.get(("PersistentVolumeClaim", "oc-shared"))
    need(config is not None, "ConfigMap oc-config is missing")
    need(extract is not None, "Job oc-extract is missing")
    need(train is not None, "Job oc-train is missing")
    need(pvc is not None, "PersistentVolumeClaim oc-shared is missing")
    if problems:
        return report(problems)

    data = config["data"]
    try:
        shards = int(data.get("SHARDS", ""))
    except ValueError:
        shards = 0
    need(shards >= 1, f"SHARDS must be a positive integer, not {data.get('SHARDS')!r}")

    # Extraction: one pod per shard, K from the completion index, N from SHARDS.
    spec = extract["spec"]
    need(spec.get("completionMode") == "Indexed", "oc-extract: completionMode must be Indexed")
    need(spec.get("completions") == shards, f"oc-extract: completions must equal SHARDS ({shards})")
    need(spec.get("parallelism", 0) >= 1, "oc-extract: parallelism must be set")
    need(spec.get("backoffLimitPerIndex", 0) >= 1,
         "oc-extract: backoffLimitPerIndex must be set (a failed shard retries alone)")
    need(spec.get("ttlSecondsAfterFinished") is not None, "oc-extract: ttlSecondsAfterFinished")
    ex = spec["template"]["spec"]["containers"][0]
    need(SHARD_ARG in ex.get("args", []), f"oc-extract: args must contain {SHARD_ARG}")
    need("--device=$(DEVICE)" in ex.get("args", []), "oc-extract: args must pass --device")
    need(data.get("DEVICE") in ("cuda", "tensorrt"), "DEVICE must be cuda or tensorrt")
    need(not any(a.startswith("--allow-cpu-fallback") for a in ex.get("args", [])),
         "oc-extract: no --allow-cpu-fallback on GPU nodes (a missing GPU must fail)")
    for part in ("requests", "limits"):
        need(str(ex.get("resources", {}).get(part, {}).get("nvidia.com/gpu")) == "1",
             f"oc-extract: resources.{part} must hold nvidia.com/gpu: 1")
    tols = extract["spec"]["template"]["spec"].get("tolerations", [])
    need(any(t.get("key") == "nvidia.com/gpu" for t in tols),
         "oc-extract: needs a toleration for the nvidia.com/gpu taint")

    # Training: held back until extraction is complete; reads the whole shard directory.
    need(train["spec"].get("suspend") is True, "oc-train: must be created suspended (run.sh resumes it)")
    need(train["spec"].get("ttlSecondsAfterFinished") is not None, "oc-train: ttlSecondsAfterFinished")
    tr = train["spec"]["template"]["spec"]["containers"][0]
    need("--activations=/data/runs/$(RUN)/activations" in tr.get("args", []),
         "oc-train: must read the shard directory /data/runs/$(RUN)/activations")
    need(any(a.startswith("--out=/data/runs/$(RUN)/activations/shard-$(JOB_COMPLETION_INDEX)")
             for a in ex.get("args", [])),
         "oc-extract: --out must be /data/runs/$(RUN)/activations/shard-$(JOB_COMPLETION_INDEX)")

    need("ReadWriteMany" in pvc["spec"].get("accessModes", []), "oc-shared: must be ReadWriteMany")

    # Every pod: non-root, requests set, the shared volume mounted at /data.
    for d in docs:
        pod = d["spec"]["template"]["spec"] if d["kind"] == "Job" else d["spec"] if d["kind"] == "Pod" else None
        if pod is None:
            continue
        name = d["metadata"]["name"]
        need(pod.get("securityContext", {}).get("runAsNonRoot") is True, f"{name}: runAsNonRoot")
        need((pod.get("securityContext", {}).get("runAsUser") or 0) > 0, f"{name}: runAsUser non-zero")
        claims = [v["persistentVolumeClaim"]["claimName"] for v in pod.get("volumes", [])
                  if "persistentVolumeClaim" in v]
        need(claims == ["oc-shared"], f"{name}: must mount the PVC oc-shared")
        for c in pod["containers"]:
            req = c.get("resources", {}).get("requests", {})
            need("cpu" in req and "memory" in req, f"{name}/{c['name']}: cpu and memory requests")
            need("memory" in c.get("resources", {}).get("limits", {}), f"{name}/{c['name']}: memory limit")
            need(c.get("securityContext", {}).get("allowPrivilegeEscalation") is False,
                 f"{name}/{c['name']}: allowPrivilegeEscalation: false")
            need(any(m.get("mountPath") == "/data" for m in c.get("volumeMounts", [])),
                 f"{name}/{c['name']}: shared volume at /data")
    return report(problems)


def serve(path: str) -> int:
    """The server: probes on the endpoints that mean live and ready, a Service that reaches the
    pods, a drain that ends before the kill, non-root, requests and limits, and on a GPU config
    one GPU per pod with the taint tolerated."""
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    objs = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    problems: list[str] = []

    def need(cond: bool, what: str) -> None:
        if not cond:
            problems.append(what)

    dep, svc = objs.get(("Deployment", "oc-serve")), objs.get(("Service", "oc-serve"))
    config = next((d for d in docs if d["kind"] == "ConfigMap"
                   and d["metadata"]["name"].startswith("oc-serve-config")), None)
    need(dep is not None, "Deployment oc-serve is missing")
    need(svc is not None, "Service oc-serve is missing")
    need(config is not None, "ConfigMap oc-serve-config is missing")
    if problems:
        return report(problems)
    pod = dep["spec"]["template"]["spec"]
    labels = dep["spec"]["template"]["metadata"].get("labels", {})
    need(all(labels.get(k) == v for k, v in svc["spec"].get("selector", {}).items()) and svc["spec"].get("selector"),
         "oc-serve: the Service selector must match the pod labels")
    c = pod["containers"][0]
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    args = c.get("args", [])
    need(args[:1] == ["serve"], "oc-serve: args must start with the serve subcommand")
    need("--host=0.0.0.0" in args, "oc-serve: --host=0.0.0.0 (the default 127.0.0.1 is unreachable)")
    need(f"--port={ports.get('http')}" in args, "oc-serve: --port must be the http containerPort")
    for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/health")):
        get = c.get(probe, {}).get("httpGet", {})
        need(get.get("path") == path, f"oc-serve: {probe} must GET {path}")
        need(get.get("port") in ports or get.get("port") in ports.values(), f"oc-serve: {probe} port is not a container port")
    for t in svc["spec"].get("ports", []):
        need(t.get("targetPort") in ports or t.get("targetPort") in ports.values(),
             "oc-serve: the Service targetPort is not a container port")
    drain = next((float(a.split("=", 1)[1]) for a in args if a.startswith("--drain-timeout=")), 30.0)
    need(drain < pod.get("terminationGracePeriodSeconds", 30),
         "oc-serve: --drain-timeout must end before terminationGracePeriodSeconds")
    need(pod.get("securityContext", {}).get("runAsNonRoot") is True, "oc-serve: runAsNonRoot")
    need(c.get("securityContext", {}).get("allowPrivilegeEscalation") is False, "oc-serve: allowPrivilegeEscalation: false")
    res = c.get("resources", {})
    need("cpu" in res.get("requests", {}) and "memory" in res.get("requests", {}), "oc-serve: cpu and memory requests")
    need("memory" in res.get("limits", {}), "oc-serve: memory limit")
    gpu = config["data"].get("DEVICE") in ("cuda", "tensorrt")
    for part in ("requests", "limits"):
        has = str(res.get(part, {}).get("nvidia.com/gpu")) == "1"
        need(has == gpu, f"oc-serve: resources.{part} must hold nvidia.com/gpu: 1 exactly when DEVICE is a GPU")
    if gpu:
        need(any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations", [])),
             "oc-serve: needs a toleration for the nvidia.com/gpu taint")
    return report(problems)


def report(problems: list[str]) -> int:
    for p in problems:
        print(f"check_manifests: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    if sys.argv[1] == "--serve":
        sys.exit(serve(sys.argv[2]))
    sys.exit(main(sys.argv[1]))
