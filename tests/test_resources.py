"""Threads from the CPU limit the process really has: cgroup v2/v1 quotas (fake files under a
root folder), the affinity mask, and the user's own choice winning."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import tlkit
from tlkit import resources
from tlkit.resources import apply_cpu_limit, cpu_limit


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


@pytest.fixture(autouse=True)
def _threads(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.delenv("TLKIT_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(resources, "_APPLIED", None)
    yield
    torch.set_num_threads(before)


def test_cgroup_v2_quota_of_the_processs_own_cgroup(tmp_path):
    root = _tree(tmp_path, {"proc/self/cgroup": "0::/kubepods/pod1/c1\n",
                            "sys/fs/cgroup/cpu.max": "max 100000\n",
                            "sys/fs/cgroup/kubepods/pod1/c1/cpu.max": "150000 100000\n"})
    lim = cpu_limit(root, affinity=64)
    assert lim.quota == 1.5 and lim.threads == 2 and "cgroup v2" in lim.source and "c1/cpu.max" in lim.source


def test_cgroup_v2_limit_on_a_parent_slice_applies(tmp_path):
    # The Littlest JupyterHub: systemd puts the quota on the user's unit; the process sits below it
    root = _tree(tmp_path, {"proc/self/cgroup": "0::/system.slice/jupyter-alice.service/kernel\n",
                            "sys/fs/cgroup/system.slice/jupyter-alice.service/cpu.max": "100000 100000\n",
                            "sys/fs/cgroup/system.slice/jupyter-alice.service/kernel/cpu.max": "max 100000\n"})
    assert cpu_limit(root, affinity=32).threads == 1


def test_cgroup_v1_cfs_quota(tmp_path):
    root = _tree(tmp_path, {"proc/self/cgroup": "4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n",
                            "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "200000\n",
                            "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n"})
    lim = cpu_limit(root, affinity=16)
    assert lim.quota == 2.0 and lim.threads == 2 and "cgroup v1" in lim.source
    # inside a container the hierarchy is mounted at the container's own cgroup
    inside = _tree(tmp_path / "c", {"proc/self/cgroup": "2:cpu,cpuacct:/docker/abc\n",
                                    "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "50000\n",
                                    "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n"})
    assert cpu_limit(inside, affinity=16).threads == 1


def test_no_quota_means_the_affinity_mask(tmp_path):
    root = _tree(tmp_path, {"proc/self/cgroup": "2:cpu,cpuacct:/\n",
                            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
                            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n"})
    lim = cpu_limit(root, affinity=3)
    assert lim.quota is None and lim.threads == 3 and "no CPU quota" in lim.source
    assert cpu_limit(tmp_path / "empty", affinity=5).threads == 5
    # the mask can be smaller than the quota (taskset, --cpuset-cpus)
    four = _tree(tmp_path / "q", {"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": "400000 100000\n"})
    assert cpu_limit(four, affinity=1).threads == 1


def test_apply_sets_torch_threads_from_the_quota(tmp_path):
    root = _tree(tmp_path, {"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": "100000 100000\n"})
    torch.set_num_threads(4)  # as if torch had started one thread per core of a 4-core node
    setting = apply_cpu_limit(root, affinity=4)
    assert torch.get_num_threads() == 1 and setting.changed and "1 CPUs from cgroup v2" in str(setting)
    assert not apply_cpu_limit(root, affinity=4).changed  # idempotent


def test_the_users_choice_wins(tmp_path, monkeypatch):
    root = _tree(tmp_path, {"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": "100000 100000\n"})
    torch.set_num_threads(3)  # the user called torch.set_num_threads(3) on a 4-core machine
    s = apply_cpu_limit(root, affinity=4)
    assert torch.get_num_threads() == 3 and "torch.set_num_threads" in s.reason and not s.changed
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert "OMP_NUM_THREADS=3" in apply_cpu_limit(root, affinity=3).reason and torch.get_num_threads() == 3
    monkeypatch.setenv("TLKIT_THREADS", "2")
    assert apply_cpu_limit(root, affinity=4).threads == 2 and torch.get_num_threads() == 2
    monkeypatch.setenv("TLKIT_THREADS", "two")
    with pytest.raises(ValueError, match="TLKIT_THREADS='two'.*positive whole number"):
        apply_cpu_limit(root)


def test_after_tlkit_set_it_a_later_user_call_is_respected(tmp_path):
    root = _tree(tmp_path, {"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": "200000 100000\n"})
    torch.set_num_threads(8)
    assert apply_cpu_limit(root, affinity=8).threads == 2
    torch.set_num_threads(5)
    assert apply_cpu_limit(root, affinity=8).threads == 5 and torch.get_num_threads() == 5


def test_check_reports_the_thread_count(capsys):
    line = tlkit.check()
    assert f"{torch.get_num_threads()} CPU thread" in line and line in capsys.readouterr().out


def test_import_tlkit_does_not_touch_threads():
    import subprocess
    import sys

    code = "import sys, tlkit, tlkit.resources; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
