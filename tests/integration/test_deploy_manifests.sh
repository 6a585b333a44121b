#!/usr/bin/env bash
# deploy/ (issue #8) against the server it deploys: every manifest parses
# (YAML with Debian's python3-yaml, the dashboard as JSON, Prometheus's config
# with promtool when present), and compose, Kubernetes, Dockerfile,
# Prometheus, Grafana and nginx point at the ports, paths and variables the
# server really has: each BUFCACHE_* named anywhere in deploy/ is one that
# `bufcache --help` lists, the listeners are 8080/6060, probes use /healthz
# and /readyz, scrapes /metrics; plus the security context, the memory limit
# left to the cgroup, the grace period above the drain, the hash routing.
source "$(dirname "$0")/lib.sh"
# a private copy of the binary under test: a rebuild of the shared build
# tree while this runs cannot swap it
cp "$BIN" "$TMP/bufcache" && BIN="$TMP/bufcache"
SRC="${BUFCACHE_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}"
PY=/usr/bin/python3
[[ -x "$PY" ]] && "$PY" -c 'import yaml' 2>/dev/null \
  || { echo "Debian's python3 with python3-yaml is needed (scripts/setup.sh)"; exit 1; }
cd "$TMP"
"$BIN" --help > help.txt 2>&1 || { fail "bufcache --help"; finish; }

# The checks print "PASS<TAB>what" or "FAIL<TAB>what"; METRIC<TAB>name lines
# list the dashboard's metric names for the live check below.
"$PY" - "$SRC" help.txt > results.txt 2> py.err <<'PYEOF'
import json, os, re, sys, glob
import yaml

src, helpfile = sys.argv[1], sys.argv[2]
dep = os.path.join(src, "deploy")
def P(ok, what):
    print(("PASS" if ok else "FAIL") + "\t" + what)
def read(p):
    with open(os.path.join(dep, p)) as f:
        return f.read()

# ---- what the server really has ----------------------------------------
help_txt = open(helpfile).read()
help_env = set(re.findall(r"\bBUFCACHE_[A-Z0-9_]+", help_txt))
defaults = dict(re.findall(r"\(env (BUFCACHE_[A-Z0-9_]+), default ([^)]*)\)", help_txt))
P("BUFCACHE_LISTEN" in help_env and "BUFCACHE_ADMIN_LISTEN" in help_env,
  "--help lists BUFCACHE_LISTEN and BUFCACHE_ADMIN_LISTEN")
DATA_PORT = int(defaults.get("BUFCACHE_LISTEN", ":0").rsplit(":", 1)[1])
ADMIN_PORT = int(defaults.get("BUFCACHE_ADMIN_LISTEN", ":0").rsplit(":", 1)[1])
P((DATA_PORT, ADMIN_PORT) == (8080, 6060), f"the server's default ports are 8080/6060 ({DATA_PORT}/{ADMIN_PORT})")

def go_seconds(d):
    total, n = 0.0, 0
    for num, unit in re.findall(r"([0-9.]+)(ms|s|m|h)", d):
        total += float(num) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
        n += 1
    return total if n else None
def size_bytes(s):
    s = str(s).strip()
    m = re.fullmatch(r"([0-9.]+)\s*([KMGT]i?|[kMGT]i?B?|[KMGT]iB|B)?", s)
    if not m:
        return None
    mult = {None: 1, "B": 1, "K": 1000, "k": 1000, "M": 10**6, "G": 10**9, "T": 10**12,
            "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
            "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
    u = m.group(2)
    if u and u.endswith("B") and u not in mult:
        u = u[:-1]
    return int(float(m.group(1)) * mult.get(u, mult.get(u.lower() if u else None, 1)))
DRAIN_DEFAULT = go_seconds(defaults.get("BUFCACHE_DRAIN_TIMEOUT", "10s"))
MAX_VALUE = size_bytes(defaults.get("BUFCACHE_MAX_VALUE_SIZE", "64MiB").replace("iB", "i"))

# ---- 1. everything parses ----------------------------------------------
docs = {}
files = sorted(glob.glob(os.path.join(dep, "**", "*.yaml"), recursive=True) +
               glob.glob(os.path.join(dep, "**", "*.yml"), recursive=True))
P(len(files) >= 8, f"deploy/ has YAML manifests ({len(files)})")
for f in files:
    rel = os.path.relpath(f, dep)
    try:
        with open(f) as fh:
            d = [x for x in yaml.safe_load_all(fh) if x is not None]
        docs[rel] = d
        P(len(d) > 0, f"YAML parses: deploy/{rel} ({len(d)} document(s))")
    except Exception as e:
        P(False, f"YAML parses: deploy/{rel}: {e}")
try:
    dash = json.loads(read("grafana/dashboards/bufcache.json"))
    P(True, "JSON parses: deploy/grafana/dashboards/bufcache.json")
except Exception as e:
    dash = {}
    P(False, f"JSON parses: deploy/grafana/dashboards/bufcache.json: {e}")

# ---- 2. every BUFCACHE_* named in deploy/ is real ----------------------
named = {}
for root, _, fs in os.walk(dep):
    for fn in fs:
        p = os.path.join(root, fn)
        try:
            txt = open(p).read()
        except UnicodeDecodeError:
            continue
        for v in set(re.findall(r"\bBUFCACHE_[A-Z0-9_]+", txt)):
            named.setdefault(v, []).append(os.path.relpath(p, dep))
unknown = {v: w for v, w in named.items() if v not in help_env}
P(not unknown, "every BUFCACHE_* variable in deploy/ is one `bufcache --help` lists"
  + (f": unknown {unknown}" if unknown else f" ({len(named)} used)"))

def env_list_to_dict(env):
    out = {}
    for e in env or []:
        out[e["name"]] = e.get("value", e.get("valueFrom"))
    return out
def port_of(addr):
    return int(str(addr).rsplit(":", 1)[1])

# ---- 3. compose ----------------------------------------------------------
compose = docs.get("compose.yaml", [{}])[0]
svcs = compose.get("services", {})
P({"bufcache", "prometheus", "grafana"} <= set(svcs), "compose: bufcache, prometheus and grafana services")
bufcache_like = {n: s for n, s in svcs.items() if s.get("image", "").startswith("bufcache")}
P(len(bufcache_like) >= 1, f"compose: bufcache services {sorted(bufcache_like)}")
for n, s in sorted(bufcache_like.items()):
    env = s.get("environment", {})
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    P(port_of(env.get("BUFCACHE_LISTEN", defaults.get("BUFCACHE_LISTEN"))) == DATA_PORT
      and port_of(env.get("BUFCACHE_ADMIN_LISTEN", defaults.get("BUFCACHE_ADMIN_LISTEN"))) == ADMIN_PORT,
      f"compose {n}: listens on {DATA_PORT}/{ADMIN_PORT}")
    P(str(env.get("BUFCACHE_LISTEN", "")).startswith("0.0.0.0:"), f"compose {n}: data listener on 0.0.0.0 in the container")
    P("BUFCACHE_MEMORY_LIMIT" not in env and s.get("mem_limit"),
      f"compose {n}: mem_limit {s.get('mem_limit')} and no BUFCACHE_MEMORY_LIMIT (the cgroup sets it)")
    drain = go_seconds(env.get("BUFCACHE_DRAIN_TIMEOUT", "")) or DRAIN_DEFAULT
    grace = go_seconds(s.get("stop_grace_period", "10s"))
    P(grace > drain, f"compose {n}: stop_grace_period {grace}s above the drain {drain}s")
    hc = " ".join(s.get("healthcheck", {}).get("test", []))
    P("bufcache-entrypoint healthcheck" in hc, f"compose {n}: healthcheck is the entrypoint's /healthz probe")
    P(s.get("read_only") is True and "ALL" in s.get("cap_drop", []), f"compose {n}: read-only, capabilities dropped")
    for p in s.get("ports", []):
        cport = int(str(p).rsplit(":", 1)[1])
        P(cport in (DATA_PORT, ADMIN_PORT), f"compose {n}: publishes container port {cport}")
    b = s.get("build", {})
    ctx = os.path.normpath(os.path.join(dep, b.get("context", ".")))
    P(os.path.isfile(os.path.join(ctx, b.get("dockerfile", "Dockerfile"))) and ctx == os.path.normpath(src),
      f"compose {n}: builds deploy/Dockerfile with the repository as context")
for n, s in svcs.items():
    for v in s.get("volumes", []):
        host = str(v).split(":")[0]
        if host.startswith("."):
            P(os.path.exists(os.path.join(dep, host)), f"compose {n}: mounts an existing {host}")

# ---- 4. Prometheus ------------------------------------------------------------
prom = docs.get("prometheus/prometheus.yml", [{}])[0]
jobs = prom.get("scrape_configs", [])
P(len(jobs) >= 1, "prometheus: has a scrape job")
for j in jobs:
    P(j.get("metrics_path", "/metrics") == "/metrics", f"prometheus job {j.get('job_name')}: scrapes /metrics")
    for sc in j.get("static_configs", []):
        for t in sc.get("targets", []):
            host, port = t.rsplit(":", 1)
            P(host in svcs and int(port) in (DATA_PORT, ADMIN_PORT),
              f"prometheus: target {t} is a compose service on a bufcache port")
P(any("./prometheus/prometheus.yml" in str(v) for v in svcs.get("prometheus", {}).get("volumes", [])),
  "compose: prometheus mounts deploy/prometheus/prometheus.yml")

# ---- 5. Grafana -----------------------------------------------------------------
ds = docs.get("grafana/provisioning/datasources/prometheus.yaml", [{}])[0]
url = ds.get("datasources", [{}])[0].get("url", "")
P(url == "http://prometheus:9090", f"grafana: datasource {url} is compose's prometheus service")
prov = docs.get("grafana/provisioning/dashboards/bufcache.yaml", [{}])[0]
path = prov.get("providers", [{}])[0].get("options", {}).get("path")
gvols = [str(v) for v in svcs.get("grafana", {}).get("volumes", [])]
P(any(v.startswith("./grafana/dashboards:" + path) for v in gvols),
  f"grafana: dashboards provider path {path} is where compose mounts deploy/grafana/dashboards")
exprs = []
def walk_panels(ps):
    for p in ps:
        for t in p.get("targets", []):
            exprs.append(t.get("expr", ""))
        walk_panels(p.get("panels", []))
walk_panels(dash.get("panels", []))
alltext = "\n".join(exprs)
for what, names in [("heap in use vs limit", ["go_memstats_heap_inuse_bytes", "go_gc_gomemlimit_bytes"]),
                    ("GC pauses", ["go_gc_pauses_seconds_bucket"]),
                    ("GC CPU", ["go_memstats_gc_cpu_fraction"]),
                    ("hit ratio", ["bufcache_cache_hits_total", "bufcache_cache_misses_total"]),
                    ("request rate", ["bufcache_http_requests_total"]),
                    ("latency", ["bufcache_http_request_duration_seconds_bucket"]),
                    ("cancellations", ["bufcache_http_requests_canceled_total"])]:
    P(all(n in alltext for n in names), f"dashboard shows {what} ({', '.join(names)})")
metrics = set()
for e in exprs:
    for m in re.findall(r"\b((?:bufcache|go|process)_[a-z0-9_]+)\b", e):
        metrics.add(m)
for m in sorted(metrics):
    print("METRIC\t" + m)

# ---- 6. Kubernetes ----------------------------------------------------------------
k8s = []
for rel, d in docs.items():
    if rel.startswith("k8s/") and not rel.endswith("kustomization.yaml"):
        k8s += [(rel, x) for x in d]
kust = docs.get("k8s/kustomization.yaml", [{}])[0]
for r in kust.get("resources", []):
    P(os.path.isfile(os.path.join(dep, "k8s", r)), f"kustomization: resource {r} exists")
kinds = [x["kind"] for _, x in k8s]
P({"StatefulSet", "Deployment", "Service", "Ingress"} <= set(kinds), f"k8s: StatefulSet, Deployment, Services, Ingress ({sorted(set(kinds))})")
services = {x["metadata"]["name"]: x for _, x in k8s if x["kind"] == "Service"}
P(any(s["spec"].get("clusterIP") == "None" for s in services.values()), "k8s: a headless Service")
P(any(s["spec"].get("type", "ClusterIP") == "ClusterIP" and s["spec"].get("clusterIP") != "None"
      for s in services.values()), "k8s: a ClusterIP Service")

dockerfile = read("Dockerfile")
m = re.search(r"^USER\s+(\d+)(?::(\d+))?", dockerfile, re.M)
image_uid = int(m.group(1)) if m else None

workloads = [(rel, x) for rel, x in k8s if x["kind"] in ("StatefulSet", "Deployment")]
for rel, w in workloads:
    name = f"{w['kind']} ({rel})"
    spec = w["spec"]
    tpl = spec["template"]
    labels = tpl["metadata"].get("labels", {})
    P(set(spec["selector"]["matchLabels"].items()) <= set(labels.items()), f"{name}: selector matches the pod labels")
    pod = tpl["spec"]
    c = pod["containers"][0]
    env = env_list_to_dict(c.get("env"))
    cports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    data = port_of(env.get("BUFCACHE_LISTEN", defaults["BUFCACHE_LISTEN"]))
    admin = port_of(env.get("BUFCACHE_ADMIN_LISTEN", defaults["BUFCACHE_ADMIN_LISTEN"]))
    P(str(env.get("BUFCACHE_LISTEN", "")).startswith("0.0.0.0:") and str(env.get("BUFCACHE_ADMIN_LISTEN", "")).startswith("0.0.0.0:"),
      f"{name}: listeners on 0.0.0.0 in the pod")
    P(set(cports.values()) == {data, admin} == {DATA_PORT, ADMIN_PORT},
      f"{name}: containerPorts {sorted(cports.values())} are the listeners {data}/{admin}")
    def probe_port(pr):
        p = pr["httpGet"]["port"]
        return cports.get(p) if isinstance(p, str) else p
    lp, rp = c.get("livenessProbe", {}), c.get("readinessProbe", {})
    P(lp.get("httpGet", {}).get("path") == "/healthz" and probe_port(lp) == data, f"{name}: liveness GET /healthz on {data}")
    P(rp.get("httpGet", {}).get("path") == "/readyz" and probe_port(rp) == data, f"{name}: readiness GET /readyz on {data}")
    lim = c.get("resources", {}).get("limits", {}).get("memory")
    P(lim is not None and "BUFCACHE_MEMORY_LIMIT" not in env,
      f"{name}: memory limit {lim} in resources, none in env (the server takes 75% of it)")
    drain = go_seconds(str(env.get("BUFCACHE_DRAIN_TIMEOUT", ""))) or DRAIN_DEFAULT
    pre = 0
    cmd = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    if len(cmd) == 2 and cmd[0] == "sleep":
        pre = float(cmd[1])
    tgp = pod.get("terminationGracePeriodSeconds", 30)
    P(tgp > drain + pre, f"{name}: terminationGracePeriodSeconds {tgp} above preStop {pre}s + drain {drain}s")
    ann = tpl["metadata"].get("annotations", {})
    P(ann.get("prometheus.io/scrape") == "true" and int(ann.get("prometheus.io/port", 0)) in (data, admin)
      and ann.get("prometheus.io/path") == "/metrics",
      f"{name}: Prometheus annotations scrape /metrics on {ann.get('prometheus.io/port')}")
    psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
    P((psc.get("runAsNonRoot") or csc.get("runAsNonRoot")) is True, f"{name}: runAsNonRoot")
    uid = csc.get("runAsUser", psc.get("runAsUser"))
    P(uid == image_uid and uid not in (None, 0), f"{name}: runAsUser {uid} is the image's USER {image_uid}")
    P(csc.get("readOnlyRootFilesystem") is True, f"{name}: read-only root filesystem")
    P(csc.get("allowPrivilegeEscalation") is False, f"{name}: no privilege escalation")
    P("ALL" in csc.get("capabilities", {}).get("drop", []), f"{name}: capabilities dropped (ALL)")
    P(int(env.get("BUFCACHE_WORKERS", "0")) >= 1, f"{name}: BUFCACHE_WORKERS set (the node's CPU count is not the pod's)")
    if w["kind"] == "StatefulSet":
        hs = services.get(spec.get("serviceName"))
        P(hs is not None and hs["spec"].get("clusterIP") == "None"
          and set(hs["spec"]["selector"].items()) <= set(labels.items()),
          f"{name}: serviceName {spec.get('serviceName')} is a headless Service selecting its pods")

for sname, s in services.items():
    sel = set(s["spec"].get("selector", {}).items())
    matched = [w for _, w in workloads if sel <= set(w["spec"]["template"]["metadata"].get("labels", {}).items())]
    P(len(matched) >= 1, f"Service {sname}: selects bufcache pods")
    for p in s["spec"]["ports"]:
        tp = p.get("targetPort", p["port"])
        for w in matched:
            cp = {q.get("name"): q["containerPort"] for q in w["spec"]["template"]["spec"]["containers"][0]["ports"]}
            P((tp in cp) if isinstance(tp, str) else (tp in cp.values()),
              f"Service {sname}: targetPort {tp} is a container port of the {w['kind']}")

for rel, ing in [(r, x) for r, x in k8s if x["kind"] == "Ingress"]:
    a = ing["metadata"].get("annotations", {})
    hb = a.get("nginx.ingress.kubernetes.io/upstream-hash-by", "")
    P(hb in ("$uri", "$request_uri") or "$uri" in hb, f"Ingress {ing['metadata']['name']}: consistent hash on the key ({hb})")
    bs = a.get("nginx.ingress.kubernetes.io/proxy-body-size")
    P(bs is not None and size_bytes(bs.replace("m", "Mi").replace("g", "Gi")) >= MAX_VALUE,
      f"Ingress: proxy-body-size {bs} admits --max-value-size")
    for rule in ing["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            be = path["backend"]["service"]
            s = services.get(be["name"])
            pn = be["port"].get("name", be["port"].get("number"))
            P(s is not None and any(pn in (p.get("name"), p["port"]) for p in s["spec"]["ports"]),
              f"Ingress: backend {be['name']}:{pn} is a Service port")
            P(path["path"].startswith("/v1/buffers"), f"Ingress: routes {path['path']}")

# ---- 7. Dockerfile and entrypoint -------------------------------------------------------------
froms = re.findall(r"^FROM\s+(\S+)", dockerfile, re.M)
P(len(froms) == 2 and froms[0] == "debian:12" and froms[1] == "debian:12-slim",
  f"Dockerfile: builds on debian:12, runs on debian:12-slim ({froms})")
run_sh = open(os.path.join(src, "scripts/run.sh")).read()
P("scripts/setup.sh build" in run_sh and re.search(r"^RUN \./scripts/setup\.sh build\b", dockerfile, re.M) is not None,
  "Dockerfile: the build stage runs the README's set-up (scripts/setup.sh build)")
wd = re.search(r"^WORKDIR\s+(\S+)", dockerfile, re.M).group(1)
P(f"COPY --from=build {wd}/build/bufcache " in dockerfile, "Dockerfile: copies the binary setup.sh built")
expose = set(int(x) for x in re.search(r"^EXPOSE\s+(.*)$", dockerfile, re.M).group(1).split())
denv = dict(re.findall(r"(BUFCACHE_[A-Z_]+)=(\S+)", dockerfile))
P(expose == {port_of(denv.get("BUFCACHE_LISTEN", ":0")), port_of(denv.get("BUFCACHE_ADMIN_LISTEN", ":0"))} == {DATA_PORT, ADMIN_PORT},
  f"Dockerfile: EXPOSE {sorted(expose)} are the ENV listeners")
P(denv.get("BUFCACHE_LISTEN", "").startswith("0.0.0.0:") and denv.get("BUFCACHE_ADMIN_LISTEN", "").startswith("0.0.0.0:"),
  "Dockerfile: listens on 0.0.0.0 by environment")
P(image_uid not in (None, 0), f"Dockerfile: runs as a numeric non-root USER ({image_uid})")
P(re.search(r'^HEALTHCHECK .*\n?.*bufcache-entrypoint", "healthcheck"', dockerfile, re.M) is not None
  and "GET /healthz" in read("entrypoint.sh"), "Dockerfile: HEALTHCHECK probes /healthz through the entrypoint")
P(re.search(r'^ENTRYPOINT \["', dockerfile, re.M) is not None and re.search(r'^\s*exec bufcache "\$@"', read("entrypoint.sh"), re.M),
  "Dockerfile: exec-form ENTRYPOINT, and the entrypoint execs bufcache (signals reach the server)")
P("COPY --chmod=0755 deploy/entrypoint.sh" in dockerfile, "Dockerfile: installs deploy/entrypoint.sh")

# ---- 8. nginx --------------------------------------------------------------------------
shard = read("nginx/bufcache-shards.conf")
P(re.search(r"^\s*hash \$(uri|request_uri) consistent;", shard, re.M) is not None, "nginx: hash ... consistent on the key")
inc = re.search(r"^\s*include\s+(\S+);", shard, re.M)
P(inc is not None, f"nginx: the shard conf includes its upstream list ({inc.group(1) if inc else None})")
rvols = [str(v) for v in svcs.get("router", {}).get("volumes", [])]
P(any(v.split(":")[1] == "/etc/nginx/" + inc.group(1) for v in rvols) and
  any(v.startswith("./nginx/bufcache-shards.conf:") for v in rvols),
  "compose router: mounts the shard conf and its upstream list where the include looks")
for f in ("nginx/compose-upstreams.conf", "nginx/bufcache-upstreams.conf.example"):
    servers = re.findall(r"^server\s+([^\s:]+):(\d+)", read(f), re.M)
    P(len(servers) >= 2 and all(int(p) == DATA_PORT for _, p in servers), f"nginx: {f} lists instances on port {DATA_PORT}")
    if f.startswith("nginx/compose"):
        P(all(h in svcs for h, _ in servers), "nginx: compose-upstreams.conf names compose services")
P(re.search(r"client_max_body_size\s+(\d+)m;", shard) and int(re.search(r"client_max_body_size\s+(\d+)m;", shard).group(1)) * (1 << 20) >= MAX_VALUE,
  "nginx: client_max_body_size admits --max-value-size")

# ---- 9. README -------------------------------------------------------------------------
readme = read("README.md")
for what in ("docker build", "compose", "kubectl", "bufcache-shards.conf", "Scale", "goes away", "cgroup"):
    P(what.lower() in readme.lower(), f"deploy/README.md covers {what}")
PYEOF
[[ -s py.err ]] && { fail "the manifest checks ran without errors"; cat py.err; }
while IFS=$'\t' read -r res what; do
  case "$res" in
    PASS) ok "$what" ;;
    FAIL) fail "$what" ;;
  esac
done < results.txt

# Prometheus's own parser, when installed (Debian's prometheus package)
if command -v promtool >/dev/null; then
  if promtool check config "$SRC/deploy/prometheus/prometheus.yml" > promtool.out 2>&1; then
    ok "promtool check config deploy/prometheus/prometheus.yml"
  else fail "promtool check config: $(cat promtool.out)"; fi
else
  ok "# skip promtool: not installed"
fi

# The dashboard's metric names against a live /metrics, when the server has
# one (not required: the check is skipped without it).
start_server --workers 1 --memory-limit 64MiB
curl -s -o metrics.txt -w '%{http_code}' "$DATA/metrics" > metrics.code
if [[ "$(cat metrics.code)" == 200 ]]; then
  missing=""
  while IFS=$'\t' read -r tag m; do
    [[ "$tag" == METRIC ]] || continue
    # a family with no series yet still has its # TYPE line
    grep -qE "^$m([{ ]|\$)|^# TYPE $m |^# TYPE ${m%_bucket} histogram" metrics.txt || missing+=" $m"
  done < results.txt
  check "every metric the dashboard queries is in /metrics" "" "$missing"
else
  ok "# skip dashboard metric names: /metrics answered $(cat metrics.code)"
fi
stop_server
finish
