"""Detector download/verification over a real local HTTP server, and metrics of a generator end to end.

Small TorchScript networks built here stand in for NVIDIA's ``vgg16.pt`` and
``inception-2015-12-05.pt``, with the same calling conventions.
"""

import dataclasses
import functools
import hashlib
import http.server
import json
import socket
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stylegan.metrics import (
    DETECTORS,
    DetectorStore,
    DetectorUnavailable,
    compute_metric,
    compute_metrics,
    default_cache_dir,
    fid_from_features,
    generate_images,
    inception_score,
    kid_from_features,
)


class StandInVGG16(torch.nn.Module):
    """vgg16.pt's convention: forward(img in [0, 255], return_features, return_lpips, resize_images)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, stride=2)

    def forward(
        self,
        img: torch.Tensor,
        return_features: bool = False,
        return_lpips: bool = False,
        resize_images: bool = True,
    ) -> torch.Tensor:
        x = img.to(torch.float32) / 255
        if resize_images:
            x = F.interpolate(x, size=(32, 32), mode="area")
        h = torch.relu(self.conv(x))
        if return_lpips:
            return h.flatten(1) / float(h[0].numel()) ** 0.5
        return F.adaptive_avg_pool2d(h, 4).flatten(1)


class StandInInception(torch.nn.Module):
    """inception-2015-12-05.pt's convention: forward(uint8 img, return_features, use_fp16, no_output_bias)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2)
        self.proj = torch.nn.Linear(8, 2048)
        self.output = torch.nn.Linear(2048, 1008)

    def forward(
        self,
        img: torch.Tensor,
        return_features: bool = False,
        use_fp16: bool = False,
        no_output_bias: bool = False,
    ) -> torch.Tensor:
        x = img.to(torch.float32) / 128 - 1
        features = self.proj(F.adaptive_avg_pool2d(torch.relu(self.conv(x)), 1).flatten(1))
        if return_features:
            return features
        logits = features @ self.output.weight.t()
        if not no_output_bias:
            logits = logits + self.output.bias
        return torch.softmax(logits, dim=1)


class ToyMapping(torch.nn.Module):
    """w = z, two ws; truncates toward its w_avg (zero), which makes its generator one with a W space."""

    def __init__(self):
        super().__init__()
        self.register_buffer("w_avg", torch.zeros(8))

    def forward(self, z, c, truncation_psi=1.0):
        return self.w_avg.lerp(z, truncation_psi)[:, None].repeat(1, 2, 1)


class ToyG(torch.nn.Module):
    """z (8-d) -> tanh of a fixed projection, 3x32x32 images; mapping truncates toward zero."""

    z_dim, c_dim = 8, 0

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.register_buffer("proj", torch.randn(8, 3 * 32 * 32, generator=gen) / 8**0.5)
        self.mapping = ToyMapping()

    def synthesis(self, ws, noise_mode="random"):
        return torch.tanh(ws[:, 0] @ self.proj).reshape(-1, 3, 32, 32)


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("www")
    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(StandInVGG16()), str(root / "vgg16.pt"))
    torch.jit.save(torch.jit.script(StandInInception()), str(root / "inception-2015-12-05.pt"))
    (root / "garbage.pt").write_bytes(b"<html>not a network</html>")
    return root


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.requests.append(self.path)
        super().do_GET()


@pytest.fixture
def server(weight_files):
    """Serves the stand-in files on 127.0.0.1; yields (base URL, list of requested paths)."""
    requests = []
    handler = functools.partial(
        type("Handler", (_Handler,), {"requests": requests}), directory=str(weight_files)
    )
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", requests
    httpd.shutdown()
    httpd.server_close()


def store_for(base_url, cache_dir, vgg16="vgg16.pt", inception="inception-2015-12-05.pt", **kwargs):
    registry = dict(DETECTORS)
    registry["vgg16"] = dataclasses.replace(DETECTORS["vgg16"], urls=(f"{base_url}/{vgg16}",))
    registry["inception-2015-12-05"] = dataclasses.replace(
        DETECTORS["inception-2015-12-05"], urls=(f"{base_url}/{inception}",)
    )
    return DetectorStore(cache_dir, registry=registry, timeout=10, **kwargs)


def sha256_of(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def real_images(n, seed=1):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)


# --- download and verification -------------------------------------------------------------------


def test_fetch_downloads_once_atomically_and_records_sha256(server, weight_files, tmp_path):
    base, requests = server
    file = store_for(base, tmp_path).fetch("vgg16")
    assert file.path == tmp_path / "detectors" / "vgg16.pt"
    assert file.sha256 == sha256_of(weight_files / "vgg16.pt") == sha256_of(file.path)
    record = json.loads((tmp_path / "detectors" / "vgg16.pt.json").read_text())
    assert record["url"] == f"{base}/vgg16.pt" and record["sha256"] == file.sha256
    assert not list((tmp_path / "detectors").glob("*.part"))
    assert store_for(base, tmp_path).fetch("vgg16").sha256 == file.sha256
    assert requests == ["/vgg16.pt"]  # the second store found the file on disk


def test_sha256_mismatch_is_unavailable_and_leaves_no_file(server, tmp_path):
    store = store_for(server[0], tmp_path)
    store.registry["vgg16"] = dataclasses.replace(store.registry["vgg16"], sha256="0" * 64)
    with pytest.raises(DetectorUnavailable, match="sha256 mismatch"):
        store.fetch("vgg16")
    assert not list((tmp_path / "detectors").iterdir())


def test_a_file_that_is_not_torchscript_is_unavailable(server, tmp_path):
    with pytest.raises(DetectorUnavailable, match="not a loadable TorchScript"):
        store_for(server[0], tmp_path, vgg16="garbage.pt").load("vgg16")


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("STYLEGAN_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "stylegan-pipeline"
    monkeypatch.setenv("STYLEGAN_CACHE_DIR", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"


# --- metrics of a generator ----------------------------------------------------------------------


def test_pr_and_ppl_report_values_with_a_downloaded_vgg16(server, weight_files, tmp_path):
    store = store_for(server[0], tmp_path)
    names = ["pr50k3_full", "ppl2_wend", "ppl_zfull"]
    pr, ppl_w, ppl_z = compute_metrics(
        names,
        ToyG(),
        [real_images(12)],
        num_gen=12,
        batch_size=5,
        device="cpu",
        detectors=store,
        progress=False,
    )
    assert pr["available"] and pr["num_real"] == 12 and pr["num_gen"] == 12 and pr["params"] == {"k": 3}
    # Computed on 12 generated images, not 50k: the name says so (see test_metric_names_never_overstate).
    assert pr["name"] == "pr12_3_full" and pr["metric"] == "pr50k3_full"
    assert set(pr["results"]) == {"pr12_3_full_precision", "pr12_3_full_recall"}
    assert (
        all(0 <= v <= 1 for v in pr["results"].values())
        and pr["value"] == pr["results"]["pr12_3_full_precision"]
    )
    assert pr["detector"]["sha256"] == sha256_of(weight_files / "vgg16.pt")
    assert json.loads(json.dumps([pr, ppl_w, ppl_z])) == [pr, ppl_w, ppl_z]  # plain JSON values only
    for result, crop in ((ppl_w, False), (ppl_z, True)):
        assert result["available"] and np.isfinite(result["value"]) and result["value"] > 0
        assert result["params"]["crop"] is crop and result["params"]["epsilon"] == 1e-4
    uncropped = compute_metric(
        "ppl_zfull",
        ToyG(),
        num_gen=12,
        batch_size=5,
        device="cpu",
        detectors=store,
        ppl_crop=False,
        progress=False,
    )
    assert uncropped["params"]["crop"] is False and uncropped["value"] != ppl_z["value"]


@pytest.mark.slow  # runs fid-helper's real Inception on CPU
def test_missing_vgg16_makes_pr_and_ppl_unavailable_while_pr_inception_runs(server, tmp_path):
    store = store_for(server[0], tmp_path, vgg16="missing/vgg16.pt")
    pr, ppl, pr_inception = compute_metrics(
        ["pr50k3_full", "ppl2_wend", "pr_inception"],
        ToyG(),
        [real_images(5)],
        num_gen=5,
        device="cpu",
        detectors=store,
        progress=False,
    )
    for result in (pr, ppl):
        assert result["available"] is False and result["value"] is None
        assert f"{server[0]}/missing/vgg16.pt" in result["reason"] and "404" in result["reason"]
        assert str(tmp_path / "detectors" / "vgg16.pt") in result["reason"]
    assert pr_inception["available"] and pr_inception["detector"]["name"] == "fid-helper-inception"
    assert 0 <= pr_inception["value"] <= 1 and pr_inception["num_real"] == 5


def test_unreachable_server_makes_ppl_unavailable(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    result = compute_metric(
        "ppl2_wend",
        ToyG(),
        num_gen=4,
        device="cpu",
        detectors=store_for(f"http://127.0.0.1:{port}", tmp_path),
    )
    assert result["available"] is False and f"http://127.0.0.1:{port}/vgg16.pt" in result["reason"]


def test_is_without_nvidia_inception_offline_is_unavailable_with_reason(tmp_path):
    result = compute_metric(
        "is50k", ToyG(), num_gen=10, device="cpu", detectors=DetectorStore(tmp_path, allow_download=False)
    )
    assert result["available"] is False
    assert (
        "no classifier" in result["reason"] and DETECTORS["inception-2015-12-05"].urls[0] in result["reason"]
    )


def test_inception_metrics_with_nvidia_inception_match_a_direct_computation(server, weight_files, tmp_path):
    store = store_for(server[0], tmp_path)
    store.fetch("inception-2015-12-05")  # once on disk, "auto" prefers it over fid-helper's network
    G, real = ToyG(), real_images(24)
    fid, kid, is50k = compute_metrics(
        ["fid50k_full", "kid50k_full", "is50k"],
        G,
        [real[:10], real[10:]],
        num_gen=20,
        batch_size=8,
        seed=4,
        device="cpu",
        detectors=store,
        progress=False,
    )
    net = torch.jit.load(str(weight_files / "inception-2015-12-05.pt"))
    with torch.inference_mode():
        gen = torch.cat(list(generate_images(G, 20, 8, seed=4, device=torch.device("cpu"))))
        real_features = net(torch.from_numpy(real), return_features=True).numpy()
        gen_features = net(gen, return_features=True).numpy()
        probs = net(gen, no_output_bias=True).numpy()
    assert fid["value"] == pytest.approx(fid_from_features(real_features, gen_features), rel=1e-5)
    assert kid["value"] == pytest.approx(kid_from_features(gen_features, real_features, seed=4), rel=1e-5)
    assert is50k["value"] == pytest.approx(inception_score(probs, 10)[0], rel=1e-5)
    assert fid["detector"]["name"] == "inception-2015-12-05" and (fid["num_real"], fid["num_gen"]) == (24, 20)
    assert kid["available"] and kid["params"] == {"num_subsets": 100, "max_subset_size": 1000}
    assert set(is50k["results"]) == {"is20_mean", "is20_std"}  # is50k of 20 images
    assert is50k["num_real"] is None


def test_real_features_come_from_the_cache_on_the_second_run(server, tmp_path):
    store = store_for(server[0], tmp_path / "weights")
    store.fetch("inception-2015-12-05")
    kwargs = dict(
        num_gen=8,
        device="cpu",
        detectors=store,
        feature_cache_dir=str(tmp_path / "features"),
        dataset_key="shards-sha256:abc",
        progress=False,
    )
    first = compute_metric("fid50k_full", ToyG(), [real_images(10)], **kwargs)

    def must_not_be_read():
        raise AssertionError("the dataset was read although its features are cached")
        yield

    second = compute_metric("fid50k_full", ToyG(), must_not_be_read(), **kwargs)
    assert not first["real_features_cached"] and second["real_features_cached"]
    assert second["value"] == first["value"]


def test_xflip_appends_mirrors_and_max_real_caps_the_real_set(server, tmp_path):
    store = store_for(server[0], tmp_path)
    store.fetch("inception-2015-12-05")
    kwargs = dict(num_gen=6, device="cpu", detectors=store, progress=False)
    assert compute_metric("fid50k_full", ToyG(), real_images(7), xflip=True, **kwargs)["num_real"] == 14
    assert compute_metric("kid50k_full", ToyG(), [real_images(7)], max_real=5, **kwargs)["num_real"] == 5


def test_unknown_metric_is_an_error_naming_it():
    with pytest.raises(ValueError, match="fid50k_half"):
        compute_metric("fid50k_half", ToyG())


def test_fid_names_state_their_generated_image_counts(server, weight_files, tmp_path):
    """fid5k_full and fid10k_full generate the number of images their names state (num_gen=None) from one
    shared pass: fid5k_full is the FID of the first 5,000 of fid10k_full's images."""
    store = store_for(server[0], tmp_path)
    store.fetch("inception-2015-12-05")
    G, real = ToyG(), real_images(64)
    fid10k, fid5k = compute_metrics(
        ["fid10k_full", "fid5k_full"], G, real, batch_size=500, device="cpu", detectors=store, progress=False
    )
    assert (fid10k["num_gen"], fid5k["num_gen"]) == (10_000, 5_000)
    net = torch.jit.load(str(weight_files / "inception-2015-12-05.pt"))
    with torch.inference_mode():
        gen = torch.cat(list(generate_images(G, 10_000, 500, seed=0, device=torch.device("cpu"))))
        real_features = net(torch.from_numpy(real), return_features=True).numpy()
        gen_features = net(gen, return_features=True).numpy()
    assert fid10k["value"] == pytest.approx(fid_from_features(real_features, gen_features), rel=1e-5)
    assert fid5k["value"] == pytest.approx(fid_from_features(real_features, gen_features[:5000]), rel=1e-5)
    explicit = compute_metric("fid5k_full", G, real, num_gen=20, detectors=store, progress=False)
    assert explicit["num_gen"] == 20  # an explicit count still wins, and is recorded


def test_an_unavailable_metric_says_why_in_one_line_with_how_to_enable_it(server, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there
    registry = dict(DETECTORS)
    registry["vgg16"] = dataclasses.replace(
        DETECTORS["vgg16"], urls=(f"http://127.0.0.1:{port}/a/vgg16.pt", f"{server[0]}/b/vgg16.pt")
    )
    store = DetectorStore(tmp_path, registry=registry, timeout=10)
    result = compute_metric("ppl2_wend", ToyG(), num_gen=4, device="cpu", detectors=store)
    brief, where = result["brief"], str(tmp_path / "detectors" / "vgg16.pt")
    assert "\n" not in brief and brief.count("http") == 1 and len(brief) < 300
    assert "download failed (connection refused; HTTP 404)" in brief
    assert brief.endswith(f"to enable: download http://127.0.0.1:{port}/a/vgg16.pt and place it at {where}")
    assert f"{server[0]}/b/vgg16.pt" in result["reason"]  # the full story stays in the reason
    offline = compute_metric(
        "pr50k3_full", ToyG(), [real_images(4)], num_gen=4, device="cpu", progress=False,
        detectors=DetectorStore(tmp_path / "none", allow_download=False),
    )  # fmt: skip
    assert offline["brief"].startswith("vgg16 weights are not on this machine; to enable: download https://")
