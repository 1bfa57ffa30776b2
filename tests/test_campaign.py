"""`estimate campaign`: plan validation, a local run, and a real two-node Ray cluster on the loopback.

The Ray cluster is Ray's own multi-node test cluster (ray.cluster_utils.Cluster): a head and a
worker node on this machine, each advertising a different device resource. Ray replaces a node
address of 127.0.0.1 by the host's outward address unless RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
(Ray's "local only" mode, the default on macOS and Windows), so the module sets it before Ray is
imported: every node then listens on and talks to 127.0.0.1 only, which the tests check.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from conftest import conv_model, run_cli

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"   # loopback only (see above); before any import of ray
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import onnx  # noqa: E402

from estimator.errors import UserError  # noqa: E402
from estimator.validate import campaign, campaign_plan  # noqa: E402

FAST = {"batches": [1, 2], "iterations": 3, "rounds": 1, "warmup": 1, "profile": False}


def _models(d: Path) -> list[str]:
    onnx.save(conv_model(k=4), str(d / "net_a.onnx"))
    onnx.save(conv_model(k=8), str(d / "net_b.onnx"))
    return ["net_a.onnx", "net_b.onnx"]


def _plan(d: Path, targets, **kw) -> Path:
    p = d / "plan.yaml"
    p.write_text(yaml.safe_dump({"models": _models(d), **FAST, **kw, "targets": targets}))
    return p


def _docs(out: Path) -> list[dict]:
    return [json.loads(f.read_text()) for f in sorted(out.rglob("*.json"))]


# ---------------------------------------------------------------------------------------------
# the plan


@pytest.mark.parametrize("body, needle", [
    ({"models": ["x.onnx"], "targets": ["local"], "batchs": [1]}, "unknown key 'batchs' (did you mean 'batches'?)"),
    ({"models": ["net_a.onnx"]}, "missing required key 'targets'"),
    ({"models": ["nope.onnx"], "targets": ["local"]}, "'models[0].model' nope.onnx: no such file"),
    ({"models": ["resnet5"], "targets": ["local"]}, "(did you mean 'resnet50'?)"),
    ({"models": ["net_a.onnx"], "targets": [{"name": "a", "resource": {"device": "x"}}]},
     "unknown key 'targets[0].resource' (did you mean 'resources'?)"),
    ({"models": ["net_a.onnx"], "targets": [{"name": "a", "resources": {"device": ""}}]}, "'targets[0].resources.device'"),
    ({"models": ["net_a.onnx"], "targets": ["a", "a"]}, "target 'a' is listed twice"),
    ({"models": ["net_a.onnx"], "targets": ["local"], "iterations": 3, "duration": 1}, "either 'iterations' or 'duration'"),
    ({"models": ["net_a.onnx"], "targets": ["local"], "batches": [0]}, "'batches' must be a list of integers >= 1"),
    ({"models": ["net_a.onnx"], "targets": [{"name": "a", "hw": "no-such-device"}]}, "'targets[0].hw'"),
    ({"models": ["net_a.onnx"], "targets": ["local"], "scenario": "server"}, "'scenario' 'server'"),
])
def test_plan_errors_name_the_key(tmp_path, body, needle):
    _models(tmp_path)
    p = tmp_path / "plan.yaml"
    p.write_text(yaml.safe_dump(body))
    with pytest.raises(UserError) as e:
        campaign_plan.load_plan(p)
    assert needle in str(e.value) and str(p) in str(e.value)


def test_plan_resources_and_paths(tmp_path):
    p = _plan(tmp_path, [{"name": "orin", "resources": {"device": "jetson-agx-orin"}, "hw": "jetson-agx-orin"},
                         {"name": "gpus", "resources": {"GPU": 2}}, "local"])
    plan = campaign_plan.load_plan(p)
    assert [t.resources for t in plan.targets] == [{"device:jetson-agx-orin": 1.0}, {"GPU": 2.0}, {}]
    assert [t.local for t in plan.targets] == [False, False, True]
    assert plan.models[0].model == str(tmp_path / "net_a.onnx")   # relative to the plan's folder
    gs = campaign_plan.groups(plan)
    assert len(gs) == 3 * 2 and len({g.group_id(plan) for g in gs}) == 6
    # the resume key follows the model's bytes: a changed file is a new measurement
    before = gs[0].group_id(plan)
    onnx.save(conv_model(k=5), str(tmp_path / "net_a.onnx"))
    assert campaign_plan.groups(plan)[0].group_id(plan) != before


def test_cli_bad_plan_is_one_line_exit_2(tmp_path):
    p = tmp_path / "plan.yaml"
    p.write_text("models: [a\n")
    code, out, err = run_cli("campaign", str(p), "--out", str(tmp_path / "o"))
    assert code == 2 and "not valid YAML" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli("campaign", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "o"))
    assert code == 2 and "no such plan file" in err


def test_ray_targets_need_ray_option(tmp_path):
    p = _plan(tmp_path, [{"name": "lab-a", "resources": {"device": "lab-a"}}])
    code, _, err = run_cli("campaign", str(p), "--out", str(tmp_path / "o"))
    assert code == 2 and "lab-a" in err and "--ray auto" in err
    assert not (tmp_path / "o").exists()


def test_ray_missing_says_how_to_install(tmp_path, monkeypatch):
    import sys
    p = _plan(tmp_path, [{"name": "lab-a", "resources": {"device": "lab-a"}}])
    monkeypatch.setitem(sys.modules, "ray", None)   # import ray -> ImportError
    code, _, err = run_cli("campaign", str(p), "--out", str(tmp_path / "o"), "--ray", "auto", "-q")
    assert code == 2 and "pip install 'estimate[fleet]'" in err


def test_unreachable_cluster_is_an_error_not_a_hang(tmp_path):
    """Ray retries an address where nothing listens for ever; the campaign checks first. (Runs
    before the cluster tests below: once this process is connected, --ray reuses that connection.)"""
    ray = pytest.importorskip("ray", reason="Ray is the optional extra estimate[fleet] (installed with [test])")
    if ray.is_initialized():
        pytest.skip("this process is already connected to a Ray cluster (run the module in file order)")
    p = _plan(tmp_path, [{"name": "lab-a", "resources": {"device": "lab-a"}}])
    code, _, err = run_cli("campaign", str(p), "--out", str(tmp_path / "o"), "--ray", "127.0.0.1:1", "-q")
    assert code == 2 and "127.0.0.1:1" in err and "nothing answers" in err
    assert not (tmp_path / "o").exists()   # nothing written before the cluster was reached


def test_auto_with_a_stale_recorded_cluster_is_an_error(tmp_path, monkeypatch):
    """--ray auto connects to the cluster `ray start` recorded; a stale record (the cluster stopped)
    is an error at once, not Ray's endless retries."""
    ray = pytest.importorskip("ray", reason="Ray is the optional extra estimate[fleet] (installed with [test])")
    if ray.is_initialized():
        pytest.skip("this process is already connected to a Ray cluster (run the module in file order)")
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text("127.0.0.1:1\n")
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    p = _plan(tmp_path, [{"name": "lab-a", "resources": {"device": "lab-a"}}])
    code, _, err = run_cli("campaign", str(p), "--out", str(tmp_path / "o"), "--ray", "auto", "-q")
    assert code == 2 and "127.0.0.1:1" in err and "does not answer" in err
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------------------
# local targets


def test_local_campaign_runs_resumes_and_reports_failures(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not an onnx file")
    p = _plan(tmp_path, ["local"])
    body = yaml.safe_load(p.read_text())
    body["models"].append("broken.onnx")
    p.write_text(yaml.safe_dump(body))
    out = tmp_path / "camp"
    code, stdout, err = run_cli("campaign", str(p), "--out", str(out), "-q")
    assert code == 1, err
    assert "local: 2 run, 0 done earlier, 1 failed" in stdout and "broken" in stdout
    docs = _docs(out)
    assert len(docs) == 2 and sum(len(d["configurations"]) for d in docs) == 4
    assert {d["campaign"]["target"] for d in docs} == {"local"}
    state = yaml.safe_load((out / "campaign.yaml").read_text())
    assert [g["status"] for g in state["groups"]] == ["done", "done", "failed"]
    # the rerun runs only the failed group (it fails again) and keeps the rest
    code, stdout, _ = run_cli("campaign", str(p), "--out", str(out), "-q")
    assert code == 1 and "local: 0 run, 2 done earlier, 1 failed" in stdout
    assert len(_docs(out)) == 2
    code, stdout, _ = run_cli("results", str(out), "--format", "json")
    rows = json.loads(stdout)["summary"]
    assert code == 0 and {r["target"] for r in rows} == {"local"} and len(rows) == 2


def test_target_runs_keep_the_other_targets_state(tmp_path):
    p = _plan(tmp_path, ["a", "b"])
    out = tmp_path / "camp"
    for t in ("a", "b"):
        code, _, err = run_cli("campaign", str(p), "--out", str(out), "--target", t, "-q")
        assert code == 0, err
    state = yaml.safe_load((out / "campaign.yaml").read_text())
    assert sorted((g["target"], g["status"]) for g in state["groups"]) == [("a", "done")] * 2 + [("b", "done")] * 2


# ---------------------------------------------------------------------------------------------
# a two-node Ray cluster on the loopback


def _listening_ports() -> dict[int, set[str]]:
    """{port: local addresses} of the listening TCP sockets (/proc/net/tcp and tcp6)."""
    out: dict[int, set[str]] = {}
    for name in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for ln in lines:
            f = ln.split()
            if f[3] != "0A":   # LISTEN
                continue
            addr, port = f[1].rsplit(":", 1)
            out.setdefault(int(port, 16), set()).add(addr)
    return out


LOOPBACK = {"0100007F", "0000000000000000FFFF00000100007F", "00000000000000000000000001000000"}


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray", reason="Ray is the optional extra estimate[fleet] (installed with [test])")
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster
    assert ray_constants.ENABLE_RAY_CLUSTER is False, "ray was imported before RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0"
    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "resources": {"device:lab-a": 1}, "include_dashboard": False,
        "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 3}})
    c.lab_b = c.add_node(num_cpus=1, resources={"device:lab-b": 1})
    ray.init(address=c.address, log_to_driver=False)
    yield c
    ray.shutdown()
    c.shutdown()


def _node_of(resource: str) -> str:
    import ray
    return next(n["NodeID"] for n in ray.nodes() if n["Alive"] and resource in n["Resources"])


def test_cluster_is_loopback_only(cluster):
    import ray
    assert cluster.address.startswith("127.0.0.1:")
    assert {n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]} == {"127.0.0.1"}
    port = int(cluster.address.rsplit(":", 1)[1])
    addrs = _listening_ports().get(port)
    assert addrs and addrs <= LOOPBACK, addrs


def test_ray_campaign_on_two_devices(cluster, tmp_path):
    p = _plan(tmp_path, [{"name": "lab-a", "resources": {"device": "lab-a"}, "hw": "xeon-8480"},
                         {"name": "lab-b", "resources": {"device": "lab-b"}}])
    out = tmp_path / "camp"
    code, stdout, err = run_cli("campaign", str(p), "--out", str(out), "--ray", cluster.address, "-q")
    assert code == 0, err
    docs = _docs(out)
    assert len(docs) == 4 and sum(len(d["configurations"]) for d in docs) == 8
    for d in docs:
        t = d["campaign"]["target"]
        assert (out / t / f"{d['run_id']}.json").is_file() and (out / t / f"{d['run_id']}.csv").is_file()
        assert d["campaign"]["node"]["node_id"] == _node_of(f"device:{t}")   # ran where the resource is
        assert d["host"]["hostname"] and d["host"]["cpu"]["usable_cores"]
        assert d["model"]["path"] in (str(tmp_path / "net_a.onnx"), str(tmp_path / "net_b.onnx"))
        assert not d["partial"] and all(c["complete"] for c in d["configurations"])
        # the profile travelled with the lab-a tasks: predictions are there
        assert all((c.get("prediction") or {}).get("latency_s") for c in d["configurations"]) == (t == "lab-a")
    code, stdout, _ = run_cli("results", str(out), "--format", "json")
    rows = json.loads(stdout)["summary"]
    assert {r["target"] for r in rows} == {"lab-a", "lab-b"} and len(rows) == 4
    # one target's results calibrate that target's profile, like any results
    code, _, err = run_cli("calibrate", str(out / "lab-a"), "--hw", "xeon-8480", "-o", str(tmp_path / "x.yaml"))
    assert code == 0, err
    src = yaml.safe_load((tmp_path / "x.yaml").read_text())["source"]
    assert "net_a" in src and "net_b" in src and "lab-b" not in src


def test_target_without_node_is_an_error_at_start(cluster, tmp_path):
    p = _plan(tmp_path, [{"name": "lab-c", "resources": {"device": "lab-c"}}])
    code, _, err = run_cli("campaign", str(p), "--out", str(tmp_path / "o"), "--ray", cluster.address, "-q")
    assert code == 2 and "target 'lab-c'" in err and "device:lab-c" in err
    assert not (tmp_path / "o").exists()


def test_worker_killed_mid_campaign_then_rerun(cluster, tmp_path):
    p = _plan(tmp_path, [{"name": "lab-a", "resources": {"device": "lab-a"}},
                         {"name": "lab-b", "resources": {"device": "lab-b"}}])
    plan = campaign_plan.load_plan(p)
    out = tmp_path / "camp"
    killed = []

    def kill_lab_b(s):   # the first lab-b result has arrived: its node dies
        if s.group.target.name == "lab-b" and s.status == "done" and not killed:
            cluster.remove_node(cluster.lab_b, allow_graceful=False)
            killed.append(s.group.label)

    o = campaign.run_campaign(plan, out, ray_address=cluster.address, quiet=True, on_result=kill_lab_b)
    assert killed
    by = {(s.group.target.name, s.status) for s in o.statuses}
    assert o.count("done") == 3 and o.count("failed") == 1, [(s.group.label, s.status, s.error) for s in o.statuses]
    assert ("lab-b", "failed") in by
    failed = next(s for s in o.statuses if s.status == "failed")
    assert "device:lab-b" in failed.error
    assert len(_docs(out)) == 3   # nothing that finished was lost
    # a new lab-b node joins; the rerun runs only the missing group
    cluster.lab_b = cluster.add_node(num_cpus=1, resources={"device:lab-b": 1})
    ran = []
    o2 = campaign.run_campaign(plan, out, ray_address=cluster.address, quiet=True, on_result=ran.append)
    assert [s.group.label for s in ran] == [failed.group.label] and ran[0].status == "done"
    assert o2.count("done earlier") == 3 and len(_docs(out)) == 4


def test_ctrl_c_keeps_what_arrived(cluster, tmp_path):
    p = _plan(tmp_path, [{"name": "lab-a", "resources": {"device": "lab-a"}}])
    plan = campaign_plan.load_plan(p)

    def interrupt(s):
        raise KeyboardInterrupt

    o = campaign.run_campaign(plan, tmp_path / "camp", ray_address=cluster.address, quiet=True, on_result=interrupt)
    assert o.interrupted and o.count("done") == 1 and o.count("interrupted") == 1
    assert len(_docs(tmp_path / "camp")) == 1
    state = yaml.safe_load((tmp_path / "camp" / "campaign.yaml").read_text())
    assert sorted(g["status"] for g in state["groups"]) == ["done", "interrupted"]
    o2 = campaign.run_campaign(plan, tmp_path / "camp", ray_address=cluster.address, quiet=True)
    assert o2.count("done earlier") == 1 and o2.count("done") == 1 and not o2.interrupted


def test_ctrl_c_collects_what_finished_meanwhile(cluster, tmp_path):
    """Ctrl-C while other nodes' groups have finished but not been collected: they are written,
    not cancelled (each node runs one group at a time; the interrupt comes 8 s after the first
    result, when the other node's first group is done)."""
    import time

    p = _plan(tmp_path, [{"name": "lab-a", "resources": {"device": "lab-a"}},
                         {"name": "lab-b", "resources": {"device": "lab-b"}}])
    plan = campaign_plan.load_plan(p)

    def interrupt(s):
        time.sleep(8)
        raise KeyboardInterrupt

    o = campaign.run_campaign(plan, tmp_path / "camp", ray_address=cluster.address, quiet=True, on_result=interrupt)
    done = o.count("done")
    assert o.interrupted and done >= 2 and o.count("interrupted") == 4 - done
    assert len(_docs(tmp_path / "camp")) == done
