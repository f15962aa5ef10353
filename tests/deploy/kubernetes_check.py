"""Structural check of deploy/kubernetes/*.yaml: every document parses, and the Deployment, its
Service and its PodDisruptionBudget fit together the way deploy/README.md says they do.

  /usr/bin/python3 kubernetes_check.py DEPLOY_KUBERNETES_DIR
"""
import pathlib
import sys

import yaml  # Debian's python3-yaml

errors = []


def check(cond, message):
    if not cond:
        errors.append(message)
    return cond


def main():
    docs = []
    for path in sorted(pathlib.Path(sys.argv[1]).glob("*.yaml")):
        try:
            docs += [(path.name, d) for d in yaml.safe_load_all(path.read_text()) if d is not None]
        except yaml.YAMLError as e:
            errors.append(f"{path.name}: does not parse: {e}")
    for name, d in docs:
        check(isinstance(d, dict) and "apiVersion" in d and "kind" in d,
              f"{name}: a document without apiVersion and kind")
    by_kind = {}
    for _, d in docs:
        by_kind.setdefault(d.get("kind"), []).append(d)

    deployments = by_kind.get("Deployment", [])
    if not check(len(deployments) == 1, "expected one Deployment"):
        return
    dep = deployments[0]
    pod = dep["spec"]["template"]
    labels = pod["metadata"]["labels"]
    check(dep["spec"]["selector"]["matchLabels"].items() <= labels.items(),
          "the Deployment's selector does not match its pod labels")
    spec = pod["spec"]
    c = spec["containers"][0]
    cmd = [str(a) for a in c.get("command", []) + c.get("args", [])]
    check("serve" in cmd, "the container does not run `specula serve`")

    def flag(name, default=None):
        return cmd[cmd.index(name) + 1] if name in cmd else default

    check(flag("--host") == "0.0.0.0", "serve must bind --host 0.0.0.0")
    port = int(flag("--port", 8080))
    port_names = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    check(port in port_names.values(), f"no containerPort {port}")

    for probe in ("readinessProbe", "livenessProbe"):
        get = c.get(probe, {}).get("httpGet", {})
        check(get.get("path") == "/health", f"{probe} is not GET /health")
        p = get.get("port")
        check(port_names.get(p, p) == port, f"{probe} does not probe port {port}")

    res = c.get("resources", {})
    for part in ("requests", "limits"):
        check({"cpu", "memory"} <= set(res.get(part, {})), f"resources.{part} needs cpu and memory")

    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    model_dir = flag("-m", "")
    mounts = [m for m in c.get("volumeMounts", []) if model_dir.startswith(m["mountPath"] + "/")]
    if check(mounts, f"no volume mounted above the model {model_dir!r}"):
        m = mounts[0]
        check(m.get("readOnly") is True, "the model mount is not read-only")
        v = volumes.get(m["name"], {})
        claim = v.get("persistentVolumeClaim", {}).get("claimName")
        check(claim is not None, "the model volume is not a PersistentVolumeClaim")
        claims = [d["metadata"]["name"] for d in by_kind.get("PersistentVolumeClaim", [])]
        check(claim in claims, f"the claim {claim!r} is not defined here")

    shutdown = float(flag("--shutdown-timeout", 30))
    grace = spec.get("terminationGracePeriodSeconds", 30)
    check(grace > max(shutdown, 30),
          f"terminationGracePeriodSeconds {grace} must exceed --shutdown-timeout {shutdown}")

    services = by_kind.get("Service", [])
    check(services, "no Service")
    for s in services:
        check(s["spec"]["selector"].items() <= labels.items(),
              f"Service {s['metadata']['name']} does not select the Deployment's pods")
    pdbs = by_kind.get("PodDisruptionBudget", [])
    check(pdbs, "no PodDisruptionBudget")
    for p in pdbs:
        check(p["spec"]["selector"]["matchLabels"].items() <= labels.items(),
              f"PodDisruptionBudget {p['metadata']['name']} does not select the pods")
        check("minAvailable" in p["spec"] or "maxUnavailable" in p["spec"],
              "the PodDisruptionBudget has neither minAvailable nor maxUnavailable")


main()
for e in errors:
    print(f"kubernetes_check: {e}", file=sys.stderr)
if errors:
    sys.exit(1)
print("kubernetes_check: ok")
