"""`estimate campaign`: run a plan's measurements on local and Ray targets into one results folder.

Each task is one group (target, model, precision: every batch, thread and instance count of the
plan), run by the same runner as `estimate validate`. Local targets run in this process; the
others are Ray tasks that need the target's resources, so Ray places them on the nodes that
advertise them (Ray schedules, retries and detects dead nodes; nothing here is a scheduler).
Results land in DIR/<target>/ in the results schema, each written atomically as it arrives, with
a `campaign` block (target, group id, node) and the `host` facts of the node that ran it.
DIR/campaign.yaml records every group's status; a rerun skips the groups that already have a
complete result (resumable). docs/campaigns.md is the user's page.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from estimator.errors import UserError
from estimator.fsutil import atomic_write_text

from . import results
from .campaign_plan import Group, Plan, groups as plan_groups

STATE_FILE = "campaign.yaml"
LOST_GRACE_S = 5.0      # a target without any alive node for this long: its waiting tasks fail
POLL_S = 1.0


class TransientTaskError(RuntimeError):
    """An unexpected failure inside a task (not a user error): Ray retries it on a node of the target."""


@dataclass
class GroupStatus:
    group: Group
    group_id: str
    status: str = "pending"          # pending | done | done earlier | failed | interrupted
    result: str | None = None        # path of the results JSON, relative to DIR
    node: dict | None = None
    error: str | None = None


@dataclass
class CampaignOutcome:
    statuses: list[GroupStatus]
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)

    def count(self, *status: str) -> int:
        return sum(1 for s in self.statuses if s.status in status)


# ---------------------------------------------------------------------------------------------
# One group, where it runs


def options(plan: Plan, group: Group, *, hw: str | None, campaign: dict, quiet: bool):
    from . import modelprep, runner
    return runner.Options(
        batches=list(plan.batches), precisions=[group.precision], threads=list(plan.threads) if plan.threads else None,
        instances=list(plan.instances), iterations=plan.iterations, duration_s=plan.duration, warmup=plan.warmup,
        rounds=plan.rounds, provider=group.target.provider, opt_level=plan.opt_level, profile=plan.profile,
        profile_runs=plan.profile_runs, hw=hw, resolution=modelprep.parse_resolution(group.model.resolution),
        seq_len=group.model.seq_len, scenario=None if plan.scenario == "sweep" else plan.scenario,
        quiet=quiet, argv=["estimate", "campaign", str(plan.path), f"(group {group.label})"], campaign=campaign)


def _campaign_block(plan: Plan, group: Group, node: dict | None) -> dict:
    return {"plan": str(plan.path), "target": group.target.name, "resources": group.target.resources,
            "group_id": group.group_id(plan), "node": node}


def run_task(plan: Plan, group: Group, model_bytes: bytes | None, hw_text: str | None) -> dict:
    """The body of a Ray task, on the node that runs it: the group's results document and any
    other files the run wrote (LoadGen logs), or {"error": ...} for a user error (not retried)."""
    import ray

    from . import runner
    ctx = ray.get_runtime_context()
    node = {"node_id": ctx.get_node_id(), "ip": ray.util.get_node_ip_address()}
    import socket
    node["hostname"] = socket.gethostname()
    with tempfile.TemporaryDirectory(prefix="estimate-campaign-") as td:
        model = group.model.model
        if model_bytes is not None:   # a file travelled through the object store: same name, same bytes
            mp = Path(td) / "model" / Path(model).name
            mp.parent.mkdir()
            mp.write_bytes(model_bytes)
            model = str(mp)
        hw = group.target.hw
        if hw_text is not None:
            hp = Path(td) / "hw" / Path(hw).name
            hp.parent.mkdir()
            hp.write_text(hw_text)
            hw = str(hp)
        out = Path(td) / "out"
        try:
            outcome = runner.run_validation(model, out, options(plan, group, hw=hw, quiet=True,
                                                                campaign=_campaign_block(plan, group, node)))
        except UserError as e:
            return {"error": str(e), "node": node}
        except Exception as e:  # noqa: BLE001 - anything else may be the node's: let Ray retry it
            raise TransientTaskError(f"{type(e).__name__}: {e}") from None
        files = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
                 if p.is_file() and p not in (outcome.json_path, outcome.csv_path)}
        return {"doc": outcome.doc, "files": files, "node": node}


# ---------------------------------------------------------------------------------------------
# Writing and resuming


def _done_before(out_dir: Path) -> dict[str, Path]:
    """{group id: result file} of the complete results already in DIR (a rerun skips them)."""
    docs, _ = results.load_results([str(out_dir)])
    done = {}
    for f, d in docs:
        gid = (d.get("campaign") or {}).get("group_id")
        if gid and not d.get("partial") and not d.get("interrupted") and d.get("configurations"):
            done[gid] = f
    return done


def _store(out_dir: Path, plan: Plan, group: Group, reply: dict) -> Path:
    """Write a task's document (its model path and profile as the driver knows them) atomically."""
    doc = reply["doc"]
    doc["model"]["path"] = group.model.model
    if group.target.hw:
        doc["settings"]["hw"] = group.target.hw
    dest = out_dir / group.target.name
    dest.mkdir(parents=True, exist_ok=True)
    j, c = dest / f"{doc['run_id']}.json", dest / f"{doc['run_id']}.csv"
    if j.exists() or c.exists():   # the same run id collected twice (never expected): keep both
        _, j, c = results.new_run_paths(dest, doc["model"]["name"], results.utc_now())
        doc["run_id"] = j.stem
    for rel, data in reply.get("files", {}).items():
        p = dest / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(p)
    results.write_results(doc, j, c)
    return j


def write_state(out_dir: Path, plan: Plan, statuses: list[GroupStatus]) -> None:
    """DIR/campaign.yaml: this run's groups, and the rows an earlier run recorded for the targets
    this one does not run (--target). One campaign per folder at a time."""
    mine = {s.group.target.name for s in statuses}
    rows = []
    try:
        old = yaml.safe_load((out_dir / STATE_FILE).read_text()) or {}
        rows = [r for r in old.get("groups") or [] if isinstance(r, dict) and r.get("target") not in mine]
    except (OSError, yaml.YAMLError, AttributeError):
        rows = []
    for s in statuses:
        r = {"target": s.group.target.name, "model": s.group.model.label, "precision": s.group.precision,
             "group_id": s.group_id, "status": s.status}
        for k in ("result", "node", "error"):
            if getattr(s, k):
                r[k] = getattr(s, k)
        rows.append(r)
    text = ("# written by `estimate campaign`; rerunning the plan into this folder skips the groups "
            "that are done\n" + yaml.safe_dump({"plan": str(plan.path), "updated_utc": results.utc_now().isoformat(
                timespec="seconds"), "groups": rows}, sort_keys=False))
    atomic_write_text(out_dir / STATE_FILE, text)


# ---------------------------------------------------------------------------------------------
# The driver


class _Bars:
    """One progress bar per target on a terminal; nothing otherwise."""

    def __init__(self, statuses: list[GroupStatus], enabled: bool):
        self.p = None
        if not enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        self.p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          transient=False)
        self.ids = {}
        for s in statuses:
            t = s.group.target.name
            if t not in self.ids:
                n = sum(1 for x in statuses if x.group.target.name == t)
                self.ids[t] = self.p.add_task(t, total=n)
            if s.status == "done earlier":
                self.p.advance(self.ids[t])
        self.p.start()

    def advance(self, s: GroupStatus) -> None:
        if self.p:
            self.p.advance(self.ids[s.group.target.name])

    def stop(self) -> None:
        if self.p:
            self.p.stop()


def run_campaign(plan: Plan, out_dir: Path, *, ray_address: str | None = None, targets: list[str] | None = None,
                 quiet: bool = False, on_result: Callable[[GroupStatus], None] | None = None) -> CampaignOutcome:
    chosen = plan.targets
    if targets:
        known = {t.name for t in plan.targets}
        for name in targets:
            if name not in known:
                raise UserError(f"--target {name}: not a target of {plan.path} (targets: {', '.join(sorted(known))})")
        chosen = [t for t in plan.targets if t.name in targets]
    remote = [t.name for t in chosen if not t.local]
    if remote and ray_address is None:
        raise UserError(f"{plan.path}: targets {', '.join(remote)} run on a Ray cluster: add --ray auto (or --ray "
                        "ADDRESS), or choose local targets with --target")
    from .runner import resolve_provider
    for t in chosen:
        if t.local:   # this host's execution providers are known here (a node's, only on the node)
            try:
                resolve_provider(t.provider)
            except UserError as e:
                raise UserError(f"{plan.path}: target '{t.name}': {str(e).replace('--provider ', 'provider ')}") from None
    out_dir = out_dir.expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir}: is a file; --out takes a directory (created if missing)")
    done = _done_before(out_dir) if out_dir.is_dir() else {}
    statuses = []
    for g in plan_groups(plan, chosen):
        gid = g.group_id(plan)
        s = GroupStatus(g, gid)
        if gid in done:
            s.status, s.result = "done earlier", str(done[gid].relative_to(out_dir))
        statuses.append(s)
    outcome = CampaignOutcome(statuses)
    todo = [s for s in statuses if s.status == "pending"]
    ray_todo = [s for s in todo if not s.group.target.local]
    # Ray first: an unreachable cluster or a target no node advertises is an error before
    # anything is written
    conn = _Connection.open(ray_address, [s.group.target for s in ray_todo]) if ray_todo else None
    try:
        out_dir = results.check_out_dir(out_dir)
        write_state(out_dir, plan, statuses)
        if not todo:
            return outcome
        from .runner import progress_enabled
        bars = _Bars(statuses, progress_enabled(quiet))
        try:
            if conn is not None:
                outcome.interrupted = _run_on_ray(conn, plan, out_dir, ray_todo, statuses, bars, on_result)
            local = [s for s in todo if s.group.target.local]
            if conn is not None and conn.lost:   # Ray would end this process during the local runs
                for s in local:
                    _finish(s, statuses, out_dir, plan, bars, on_result, "failed",
                            error="not run: the Ray cluster stopped answering first; rerun the plan")
            elif not outcome.interrupted:
                outcome.interrupted = _run_local(plan, out_dir, local, statuses, bars, quiet, on_result)
        finally:
            bars.stop()
            if outcome.interrupted:
                for s in statuses:
                    if s.status == "pending":
                        s.status = "interrupted"
            write_state(out_dir, plan, statuses)
        return outcome
    finally:
        if conn is not None:
            conn.close()


def _finish(s: GroupStatus, statuses, out_dir, plan, bars, on_result, status: str, **kw) -> None:
    s.status = status
    for k, v in kw.items():
        setattr(s, k, v)
    write_state(out_dir, plan, statuses)
    bars.advance(s)
    if on_result:
        on_result(s)


def _run_local(plan, out_dir, todo, statuses, bars, quiet, on_result) -> bool:
    from . import runner
    s = None
    try:
        for s in todo:
            dest = out_dir / s.group.target.name
            try:
                o = runner.run_validation(s.group.model.model, dest, options(
                    plan, s.group, hw=s.group.target.hw, quiet=True, campaign=_campaign_block(plan, s.group, None)))
            except UserError as e:
                _finish(s, statuses, out_dir, plan, bars, on_result, "failed", error=str(e))
                continue
            except Exception as e:  # noqa: BLE001 - one group's failure must not stop the others
                _finish(s, statuses, out_dir, plan, bars, on_result, "failed", error=f"{type(e).__name__}: {e}"[:500])
                continue
            if o.interrupted:   # the runner saved what it measured, marked partial (a rerun redoes it)
                s.status, s.result = "interrupted", str(o.json_path.relative_to(out_dir))
                return True
            _finish(s, statuses, out_dir, plan, bars, on_result, "done", result=str(o.json_path.relative_to(out_dir)))
    except KeyboardInterrupt:
        if s is not None and s.status == "pending":
            s.status = "interrupted"
        return True
    return False


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def _recorded_cluster() -> str | None:
    """The address `ray start` recorded on this machine (what --ray auto connects to), if any."""
    base = os.environ.get("RAY_TMPDIR") or "/tmp"
    try:
        return Path(base, "ray", "ray_current_cluster").read_text().strip() or None
    except OSError:
        return None


def _loopback_address(address: str) -> bool:
    """A cluster address on this machine's loopback (for `auto`: the one `ray start` recorded)."""
    if address == "auto":
        address = _recorded_cluster()
        if address is None:
            return False
    host = address.split("://")[-1].rsplit(":", 1)[0].strip("[]")
    return host in LOOPBACK_HOSTS


def _tcp_reachable(hostport: str, timeout: float = 5.0) -> bool:
    import socket
    host, _, port = hostport.split("://")[-1].rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


@dataclass
class _Connection:
    """The driver's connection to a Ray cluster, checked before anything runs."""
    ray: object
    address: str
    gcs: str | None
    owned: bool
    lost: bool = False   # the head stopped answering (Ray ends a driver that lost it within a minute)

    @classmethod
    def open(cls, address: str, targets) -> "_Connection":
        if "ray" not in sys.modules and _loopback_address(address):
            # a one-machine cluster: Ray's local-only mode keeps this driver on the loopback too
            # (otherwise Ray replaces 127.0.0.1 by the host's outward address)
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        try:
            import ray
        except ImportError:
            raise UserError("--ray needs Ray, an optional extra: pip install 'estimate[fleet]' (from a clone: "
                            "pip install '.[fleet]')") from None
        owned = not ray.is_initialized()
        if owned:
            # Ray retries an unreachable address for ever: check that something listens first
            if address != "auto" and not _tcp_reachable(address):
                raise UserError(f"--ray {address}: nothing answers at that address (a Ray cluster's head, host:port; "
                                "`ray status` on the head prints it)")
            recorded = _recorded_cluster() if address == "auto" and not os.environ.get("RAY_ADDRESS") else None
            if recorded is not None and not _tcp_reachable(recorded):
                raise UserError(f"--ray auto: the cluster `ray start` recorded on this machine ({recorded}) does not "
                                "answer (stopped? `ray stop` clears it); start one with `ray start --head`, or give "
                                "--ray HOST:PORT")
            try:
                ray.init(address=address, log_to_driver=False, logging_level="WARNING")
            except (ConnectionError, RuntimeError, ValueError) as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise UserError(f"--ray {address}: cannot connect to a Ray cluster ({first}); start one with "
                                "`ray start --head`, or give the head's address as --ray HOST:PORT "
                                "(docs/campaigns.md)") from None
        try:
            gcs = ray.get_runtime_context().gcs_address
        except Exception:  # noqa: BLE001 - only used to notice a lost cluster
            gcs = None
        conn = cls(ray, address, gcs, owned)
        alive = _alive_resources(ray)
        for t in {t.name: t for t in targets}.values():
            miss = _missing(t, alive)
            if miss:
                conn.close()
                raise UserError(f"target '{t.name}': no alive node of the Ray cluster advertises {', '.join(miss)} "
                                f"(start its node with `ray start --address ... --resources "
                                f"'{{\"{next(iter(t.resources))}\": 1}}'`, docs/campaigns.md)")
        return conn

    def close(self) -> None:
        if self.owned and self.ray.is_initialized():
            self.ray.shutdown()


def _alive_resources(ray) -> dict[str, float]:
    tot: dict[str, float] = {}
    for n in ray.nodes():
        if n.get("Alive"):
            for k, v in (n.get("Resources") or {}).items():
                tot[k] = tot.get(k, 0.0) + v
    return tot


def _missing(target, alive: dict) -> list[str]:
    return [f"{k} ({v:g})" for k, v in target.resources.items() if alive.get(k, 0.0) < v]


def _task_error(e: BaseException) -> str:
    cause = getattr(e, "cause", None)
    if cause is not None and not isinstance(cause, BaseException):
        cause = None
    text = str(cause if cause is not None else e).strip()
    first = text.splitlines()[0] if text else type(e).__name__
    return f"{type(e).__name__}: {first}"[:500]


def _run_on_ray(conn: _Connection, plan, out_dir, todo, statuses, bars, on_result) -> bool:
    import contextlib
    ray = conn.ray
    task = ray.remote(run_task)
    model_refs: dict[str, object] = {}
    hw_texts: dict[str, str] = {}
    pending: dict = {}

    def fail_all(where, error):
        for ref, s in list(where.items()):
            ray.cancel(ref, force=True)
            del pending[ref]
            _finish(s, statuses, out_dir, plan, bars, on_result, "failed", error=error)

    # Ray prints its notices (a task retried, a node marked dead) on stdout: keep stdout for the summary
    with contextlib.redirect_stdout(sys.stderr):
        try:
            for s in todo:
                m, t = s.group.model, s.group.target
                if m.is_file and m.model not in model_refs:
                    model_refs[m.model] = ray.put(Path(m.model).read_bytes())
                if t.hw and Path(t.hw).is_file() and t.hw not in hw_texts:
                    hw_texts[t.hw] = Path(t.hw).read_text()
                ref = task.options(resources=dict(t.resources), num_cpus=0, max_retries=plan.retries,
                                   retry_exceptions=[TransientTaskError], name=f"estimate:{s.group.label}").remote(
                    plan, s.group, model_refs.get(m.model), hw_texts.get(t.hw))
                pending[ref] = s
            lost_since: dict[str, float] = {}
            last_check = 0.0
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
                for ref in ready:
                    s = pending.pop(ref)
                    try:
                        reply = ray.get(ref)
                    except Exception as e:  # noqa: BLE001 - retries exhausted, node lost, cancelled
                        _finish(s, statuses, out_dir, plan, bars, on_result, "failed", error=_task_error(e))
                        continue
                    if "error" in reply:
                        _finish(s, statuses, out_dir, plan, bars, on_result, "failed", error=reply["error"],
                                node=reply.get("node"))
                        continue
                    j = _store(out_dir, plan, s.group, reply)
                    _finish(s, statuses, out_dir, plan, bars, on_result, "done", result=str(j.relative_to(out_dir)),
                            node=reply.get("node"))
                now = time.monotonic()
                if not pending or now - last_check < POLL_S:
                    continue
                last_check = now
                if conn.gcs and not _tcp_reachable(conn.gcs, timeout=1.0):   # the head itself is gone
                    since = lost_since.setdefault("", now)
                    if now - since >= LOST_GRACE_S:
                        fail_all(dict(pending), f"the Ray cluster at {conn.gcs} stopped answering; rerun the plan")
                        conn.owned = False   # a shutdown would wait for the dead cluster
                        conn.lost = True
                    continue
                lost_since.pop("", None)
                alive = _alive_resources(ray)
                for t in {s.group.target.name: s.group.target for s in pending.values()}.values():
                    if not _missing(t, alive):
                        lost_since.pop(t.name, None)
                        continue
                    since = lost_since.setdefault(t.name, now)
                    if now - since >= LOST_GRACE_S:
                        fail_all({r: s for r, s in pending.items() if s.group.target.name == t.name},
                                 f"no alive node advertises {', '.join(_missing(t, alive))} any more (node lost); "
                                 "rerun the plan to run it")
        except KeyboardInterrupt:
            # what already finished is kept: collect it before cancelling the rest
            try:
                ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0) if pending else ([], [])
                for ref in ready:
                    s = pending.pop(ref)
                    try:
                        reply = ray.get(ref, timeout=5)
                    except Exception:  # noqa: BLE001 - failed or unreadable: it is run again next time
                        s.status = "interrupted"
                        continue
                    if "doc" in reply:
                        j = _store(out_dir, plan, s.group, reply)
                        s.status, s.result, s.node = "done", str(j.relative_to(out_dir)), reply.get("node")
                    else:
                        s.status, s.error, s.node = "failed", reply.get("error"), reply.get("node")
            except KeyboardInterrupt:
                pass
            for ref, s in pending.items():
                ray.cancel(ref, force=True)
                s.status = "interrupted"
            return True
    return False


def summary_lines(outcome: CampaignOutcome) -> list[str]:
    """Per target: done / done earlier / failed, and each failure with its error."""
    lines = []
    for t in dict.fromkeys(s.group.target.name for s in outcome.statuses):
        mine = [s for s in outcome.statuses if s.group.target.name == t]
        c = {k: sum(1 for s in mine if s.status == k) for k in ("done", "done earlier", "failed", "interrupted", "pending")}
        lines.append(f"{t}: {c['done']} run, {c['done earlier']} done earlier, {c['failed']} failed"
                     + (f", {c['interrupted'] + c['pending']} not run (interrupted)" if c["interrupted"] + c["pending"] else ""))
        for s in mine:
            if s.status == "failed":
                lines.append(f"  failed: {s.group.label}: {s.error}")
    return lines
