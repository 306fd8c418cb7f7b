"""A class on a real JupyterHub, on this machine: N students log in, start their servers, run chapter 1.

    python benchmarks/classroom.py                 # N = 1, 4, 8 students, one after the other
    python benchmarks/classroom.py --students 2    # one class of 2
    python benchmarks/classroom.py --json out.json

JupyterHub (from PyPI) and configurable-http-proxy (npm, ``benchmarks/hub/node_modules``, installed by
``scripts/setup.sh --test``) listen on 127.0.0.1 only; SimpleLocalProcessSpawner starts each student's
single-user server as a local process with its own home folder under a temporary directory, and
DummyAuthenticator checks a shared password. Each simulated student, concurrently:

1. logs in through the hub's login form (``/hub/login``: XSRF cookie, username, password);
2. gets an API token and starts their server through the hub's REST API, polling until it is ready;
3. uploads chapter 1 and opens it through the server's sessions API (a kernel, as JupyterLab does);
4. executes every code cell over the kernel's websocket in smoke mode (``TLKIT_SMOKE=1``), then one more
   cell that runs the control panel's scripted training (``panel.train(block=True)``), then a probe
   that prints the kernel's peak resident memory;
5. saves the notebook with its outputs through the contents API and reads it back: every output the
   kernel sent must be in the saved file ("lost output" counts those that are not).

A sampler follows every process of the hub's tree (hub, proxy, servers, kernels) and attributes them
to students by their ``JUPYTERHUB_USER``; a prober times the hub's REST API all along. Printed per N:
all finished, wall time, per-student peak memory (server + kernel; max and mean), total memory of the
whole tree, hub API latency p50/p95 and lost outputs. Every server and the hub are stopped at the
end, also on failure or Ctrl-C; processes of the tree still alive then are killed.

Each student's kernel gets ``TLKIT_THREADS=1`` (``--threads``), as on a hub that limits each student to
one CPU: without it N kernels on a 2-core machine would each start two threads.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = ROOT / "notebooks" / "01_word_embeddings.ipynb"
CHP = ROOT / "benchmarks" / "hub" / "node_modules" / ".bin" / "configurable-http-proxy"
PASSWORD = "transfer-learning"
PANEL_CELL = 'state = panel.train(block=True, name="student run")\nprint(panel.message)'
PROBE_CELL = ("print('@@MEM', *[l.split()[1] for l in open('/proc/self/status') "
              "if l.startswith(('VmHWM:', 'VmRSS:'))])")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Student:
    name: str
    finished: bool = False
    error: str | None = None
    wall_s: float = 0.0
    kernel_peak_mb: float = 0.0
    peak_mb: float = 0.0             # server + kernel, from the sampler
    outputs: int = 0
    lost: int = 0
    saved: Path | None = None


@dataclass
class ClassResult:
    n: int
    students: list[Student]
    wall_s: float
    total_peak_mb: float
    latencies_ms: list[float] = field(default_factory=list)
    leftover_pids: list[int] = field(default_factory=list)

    @property
    def all_finished(self) -> bool:
        return all(s.finished for s in self.students)

    @property
    def lost(self) -> int:
        return sum(s.lost for s in self.students)

    def latency(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        xs = sorted(self.latencies_ms)
        return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]

    def row(self) -> dict[str, Any]:
        peaks = [s.peak_mb for s in self.students]
        return {"students": self.n, "all_finished": self.all_finished, "wall_s": round(self.wall_s, 1),
                "student_peak_mb_max": round(max(peaks), 0), "student_peak_mb_mean": round(statistics.mean(peaks), 0),
                "kernel_peak_mb_max": round(max(s.kernel_peak_mb for s in self.students), 0),
                "total_peak_mb": round(self.total_peak_mb, 0), "hub_api_p50_ms": round(self.latency(0.5), 1),
                "hub_api_p95_ms": round(self.latency(0.95), 1), "hub_api_calls": len(self.latencies_ms),
                "lost_outputs": self.lost, "errors": [f"{s.name}: {s.error}" for s in self.students if s.error],
                "leftover_pids": self.leftover_pids}


# --------------------------------------------------------------------------- the hub
class Hub:
    """JupyterHub + proxy on 127.0.0.1 in a temporary folder; ``stop()`` ends every process it started."""

    def __init__(self, work: Path, threads: int):
        import psutil

        if not CHP.exists():
            raise RuntimeError(f"configurable-http-proxy is not installed at {CHP}; run "
                               "`npm ci --prefix benchmarks/hub` (scripts/setup.sh --test does it)")
        self.work, self.port, self.token = work, _free_port(), secrets.token_hex(24)
        self.url = f"http://127.0.0.1:{self.port}"
        bin_dir = Path(sys.executable).parent
        homes = work / "homes"
        homes.mkdir(parents=True)
        env = {"TLKIT_SMOKE": "1", "TLKIT_THREADS": str(threads), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "TLKIT_OFFLINE": "1", "PATH": os.environ["PATH"]}
        config = f"""
c = get_config()  # noqa
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {self.port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {_free_port()}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{_free_port()}"
c.ConfigurableHTTPProxy.command = [{str(CHP)!r}]
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = {PASSWORD!r}
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = {str(homes)!r} + "/{{username}}"
c.Spawner.cmd = [{str(bin_dir / "jupyterhub-singleuser")!r}]
c.Spawner.args = {["--allow-root"] if os.geteuid() == 0 else []!r}
c.Spawner.environment = {env!r}
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 180
c.JupyterHub.db_url = "sqlite:///{work / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = {str(work / 'cookie_secret')!r}
c.JupyterHub.services = [{{"name": "classroom-loadtest", "api_token": {self.token!r}}}]
c.JupyterHub.load_roles = [{{"name": "classroom-loadtest", "services": ["classroom-loadtest"],
                             "scopes": ["admin:users", "admin:servers", "tokens", "read:hub"]}}]
c.JupyterHub.cleanup_servers = True
c.JupyterHub.log_level = "WARN"
"""
        (work / "jupyterhub_config.py").write_text(config)
        self.log = open(work / "hub.log", "w")
        self.proc = subprocess.Popen([str(bin_dir / "jupyterhub"), "-f", str(work / "jupyterhub_config.py")],
                                     cwd=work, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.seen: dict[int, Any] = {}  # every process of the tree ever sampled (pid -> psutil.Process)
        self._psutil = psutil

    def tree(self) -> list:
        ps = self._psutil
        try:
            hub = ps.Process(self.proc.pid)
            procs = [hub, *hub.children(recursive=True)]
        except ps.NoSuchProcess:
            return []
        for p in procs:
            self.seen.setdefault(p.pid, p)
        return procs

    def wait_ready(self, timeout: float = 60) -> None:
        import urllib.request

        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyterhub exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                urllib.request.urlopen(f"{self.url}/hub/api/", timeout=2).read()
                return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"jupyterhub did not answer on {self.url} within {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, n: int = 3000) -> str:
        self.log.flush()
        return (self.work / "hub.log").read_text()[-n:]

    def stop(self, users: list[str]) -> list[int]:
        """Stop every server, then the hub (which stops the proxy); kill whatever of the tree is left.
        Returns the pids that had to be killed."""
        import urllib.request

        for name in users:
            try:
                req = urllib.request.Request(f"{self.url}/hub/api/users/{name}/server", method="DELETE",
                                             headers={"Authorization": f"token {self.token}"})
                urllib.request.urlopen(req, timeout=30).read()
            except OSError:
                pass  # not started, or already gone: the kill below covers it
        self.tree()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        killed = []
        for pid, p in self.seen.items():
            try:
                if p.is_running() and p.status() != self._psutil.STATUS_ZOMBIE:
                    p.terminate()
                    killed.append(pid)
            except self._psutil.NoSuchProcess:
                pass
        if killed:
            _, alive = self._psutil.wait_procs([self.seen[p] for p in killed], timeout=10)
            for p in alive:
                p.kill()
        self.log.close()
        return killed


class Sampler(threading.Thread):
    """Every ``period`` s: resident memory of each student's processes and of the whole tree; and the
    latency of the hub's REST API (``GET /hub/api/users`` with the admin token) as a student would feel it."""

    def __init__(self, hub: Hub, period: float = 0.5):
        super().__init__(daemon=True)
        self.hub, self.period = hub, period
        self.per_user: dict[str, float] = {}
        self.total_peak = 0.0
        self.latencies: list[float] = []
        self.done = threading.Event()

    def run(self) -> None:
        import urllib.request

        ps = self.hub._psutil
        while not self.done.is_set():
            per_user: dict[str, float] = {}
            total = 0.0
            for p in self.hub.tree():
                try:
                    rss = p.memory_info().rss / 2**20
                    user = p.environ().get("JUPYTERHUB_USER")
                except (ps.NoSuchProcess, ps.AccessDenied, ps.ZombieProcess):
                    continue
                total += rss
                if user:
                    per_user[user] = per_user.get(user, 0.0) + rss
            self.total_peak = max(self.total_peak, total)
            for u, mb in per_user.items():
                self.per_user[u] = max(self.per_user.get(u, 0.0), mb)
            t0 = time.perf_counter()
            try:
                req = urllib.request.Request(f"{self.hub.url}/hub/api/users",
                                             headers={"Authorization": f"token {self.hub.token}"})
                urllib.request.urlopen(req, timeout=30).read()
                self.latencies.append((time.perf_counter() - t0) * 1000)
            except OSError:
                pass
            self.done.wait(self.period)


# --------------------------------------------------------------------------- one student
async def _hub_call(client, latencies: list[float], url: str, **kw):
    t0 = time.perf_counter()
    resp = await client.fetch(url, raise_error=False, request_timeout=120, **kw)
    latencies.append((time.perf_counter() - t0) * 1000)
    if resp.code >= 400:
        raise RuntimeError(f"{kw.get('method', 'GET')} {url}: HTTP {resp.code} {resp.body[:300]!r}")
    return resp


async def _execute(ws, session: str, code: str, timeout: float) -> list[dict]:
    """Run ``code`` in the kernel behind websocket ``ws``; its outputs as nbformat dicts. Raises on error."""
    import nbformat

    msg_id = uuid.uuid4().hex
    await ws.write_message(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "session": session, "username": "student",
                   "version": "5.3", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True}}))
    outputs: list[dict] = []
    idle = replied = False
    error = None
    deadline = time.monotonic() + timeout
    while not (idle and replied):
        raw = await asyncio.wait_for(ws.read_message(), max(1.0, deadline - time.monotonic()))
        if raw is None:
            raise RuntimeError("kernel websocket closed")
        if isinstance(raw, bytes):
            continue  # binary frames carry widget buffers
        msg = json.loads(raw)
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = msg["header"]["msg_type"]
        if msg.get("channel") == "shell" and kind == "execute_reply":
            replied = True
            if msg["content"].get("status") == "error":
                error = f"{msg['content'].get('ename')}: {msg['content'].get('evalue')}"
        elif kind == "status" and msg["content"].get("execution_state") == "idle":
            idle = True
        elif kind == "clear_output":
            outputs.clear()
        elif kind in ("stream", "display_data", "execute_result", "error"):
            outputs.append(nbformat.v4.output_from_msg(msg))
    if error:
        raise RuntimeError(f"cell failed: {error}\n{code[:300]}")
    return outputs


async def student(hub: Hub, name: str, latencies: list[float], timeout: float) -> Student:
    import nbformat
    from tornado.httpclient import AsyncHTTPClient, HTTPRequest
    from tornado.websocket import websocket_connect

    st = Student(name)
    t0 = time.perf_counter()
    client = AsyncHTTPClient(force_instance=True)
    admin = {"Authorization": f"token {hub.token}"}
    try:
        # 1. log in through the form, as a browser does
        page = await _hub_call(client, latencies, f"{hub.url}/hub/login")
        cookies = "; ".join(c.split(";")[0] for c in page.headers.get_list("Set-Cookie"))
        xsrf = next(c.split("=", 1)[1] for c in cookies.split("; ") if c.startswith("_xsrf="))
        body = f"username={name}&password={PASSWORD}&_xsrf={xsrf}"
        login = await _hub_call(client, latencies, f"{hub.url}/hub/login?next=", method="POST", body=body,
                                headers={"Cookie": cookies}, follow_redirects=False)
        if not any("jupyterhub-session-id" in c or "jupyterhub-hub-login" in c for c in login.headers.get_list("Set-Cookie")):
            raise RuntimeError(f"login as {name} set no session cookie (HTTP {login.code})")
        # 2. a token, then start the server and wait for it
        tok = await _hub_call(client, latencies, f"{hub.url}/hub/api/users/{name}/tokens", method="POST",
                              headers=admin, body=json.dumps({"note": "classroom load test", "expires_in": 7200}))
        auth = {"Authorization": f"token {json.loads(tok.body)['token']}"}
        await _hub_call(client, latencies, f"{hub.url}/hub/api/users/{name}/server", method="POST", headers=auth, body="{}")
        while True:
            info = json.loads((await _hub_call(client, latencies, f"{hub.url}/hub/api/users/{name}", headers=auth)).body)
            server = info.get("servers", {}).get("", {})
            if server.get("ready"):
                break
            if time.perf_counter() - t0 > timeout:
                raise RuntimeError("server did not become ready")
            await asyncio.sleep(0.5)
        base = f"{hub.url}/user/{name}/api"
        # 3. upload chapter 1 and open it (a session = notebook + kernel)
        nb = nbformat.read(CHAPTER, as_version=4)
        path = CHAPTER.name
        await client.fetch(f"{base}/contents/{path}", method="PUT", headers=auth, request_timeout=60,
                           body=json.dumps({"type": "notebook", "format": "json", "content": nb}))
        sess = json.loads((await client.fetch(f"{base}/sessions", method="POST", headers=auth, request_timeout=120,
                                              body=json.dumps({"path": path, "type": "notebook", "name": path,
                                                               "kernel": {"name": "python3"}}))).body)
        kernel, session = sess["kernel"]["id"], uuid.uuid4().hex
        ws = await websocket_connect(HTTPRequest(f"{base.replace('http', 'ws', 1)}/kernels/{kernel}/channels"
                                                 f"?session_id={session}", headers=auth), max_message_size=2**28)
        # 4. every code cell, the panel's scripted training, the memory probe
        nb.cells += [nbformat.v4.new_code_cell(PANEL_CELL), nbformat.v4.new_code_cell(PROBE_CELL)]
        count = 0
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            count += 1
            cell.outputs = await _execute(ws, session, cell.source, timeout)
            cell.execution_count = count
            st.outputs += len(cell.outputs)
        ws.close()
        probe = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
        st.kernel_peak_mb = int(probe.split()[1]) / 1024 if probe.startswith("@@MEM") else float("nan")
        # 5. save with outputs, read back, count what is missing
        await client.fetch(f"{base}/contents/{path}", method="PUT", headers=auth, request_timeout=60,
                           body=json.dumps({"type": "notebook", "format": "json", "content": nb}))
        saved = json.loads((await client.fetch(f"{base}/contents/{path}?content=1", headers=auth)).body)["content"]
        got = [c.get("outputs", []) for c in saved["cells"] if c["cell_type"] == "code"]
        sent = [c.outputs for c in nb.cells if c.cell_type == "code"]
        st.lost = sum(max(0, len(a) - len(b)) for a, b in zip(sent, got)) + sum(len(a) for a in sent[len(got):])
        st.saved = hub.work / "homes" / name / path
        await client.fetch(f"{base}/sessions/{sess['id']}", method="DELETE", headers=auth, raise_error=False)
        st.finished = True
    except Exception as exc:  # noqa: BLE001 - one student's failure is reported, the others go on
        st.error = f"{type(exc).__name__}: {exc}"[:800]
    finally:
        client.close()
        st.wall_s = time.perf_counter() - t0
    return st


# --------------------------------------------------------------------------- a class
def run_class(n: int, *, threads: int = 1, timeout: float = 1200, keep: bool = False,
              workdir: str | os.PathLike | None = None) -> ClassResult:
    """Start a hub, let ``n`` students work through chapter 1 at the same time, stop everything."""
    work = Path(tempfile.mkdtemp(prefix=f"tlkit-class{n}-", dir=workdir))
    users = [f"student{i + 1:02d}" for i in range(n)]
    hub = sampler = None
    students: list[Student] = []
    t0 = time.perf_counter()
    try:
        hub = Hub(work, threads)
        hub.wait_ready()
        sampler = Sampler(hub)
        sampler.start()
        latencies: list[float] = []

        async def main():
            return await asyncio.gather(*(student(hub, u, latencies, timeout) for u in users))

        students = list(asyncio.run(main()))
        wall = time.perf_counter() - t0
    except BaseException:
        if hub is not None:
            print(hub.log_tail(), file=sys.stderr)
        raise
    finally:
        if sampler is not None:
            sampler.done.set()
            sampler.join(timeout=35)
        killed = hub.stop(users) if hub is not None else []
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    for s in students:
        s.peak_mb = sampler.per_user.get(s.name, 0.0)
        if not keep:
            s.saved = None
    return ClassResult(n, students, wall, sampler.total_peak, latencies + sampler.latencies, killed)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--students", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--threads", type=int, default=1, help="PyTorch threads per student kernel (TLKIT_THREADS)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds a student may take")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args()
    rows = []
    for n in args.students:
        res = run_class(n, threads=args.threads, timeout=args.timeout)
        rows.append(res.row())
        r = rows[-1]
        print(f"N={n}: all finished {r['all_finished']}, wall {r['wall_s']:.0f} s, per-student peak "
              f"{r['student_peak_mb_max']:.0f} MB (mean {r['student_peak_mb_mean']:.0f}), total {r['total_peak_mb']:.0f} MB, "
              f"hub API p50 {r['hub_api_p50_ms']:.0f} ms p95 {r['hub_api_p95_ms']:.0f} ms, lost outputs {r['lost_outputs']}",
              flush=True)
        for e in r["errors"]:
            print("  error:", e)
    print()
    print("| students | all finished | wall time | per-student peak (max / mean) | kernel peak | total memory "
          "| hub API p50 / p95 | lost output |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['students']} | {'yes' if r['all_finished'] else 'NO'} | {r['wall_s']:.0f} s "
              f"| {r['student_peak_mb_max']:.0f} / {r['student_peak_mb_mean']:.0f} MB | {r['kernel_peak_mb_max']:.0f} MB "
              f"| {r['total_peak_mb']:.0f} MB | {r['hub_api_p50_ms']:.0f} / {r['hub_api_p95_ms']:.0f} ms "
              f"| {r['lost_outputs']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0 if all(r["all_finished"] and r["lost_outputs"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
