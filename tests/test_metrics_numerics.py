"""FID, KID, precision/recall, IS and the feature cache against closed forms and plain references."""

import json

import numpy as np
import pytest
import scipy.linalg
import scipy.spatial.distance

from stylegan.metrics import (
    cached_dataset_features,
    fid_from_features,
    frechet_distance,
    inception_score,
    kid_from_features,
    load_cached_features,
    mean_cov,
    precision_recall,
)


def random_spd(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


# --- FID -----------------------------------------------------------------------------------------


def test_frechet_distance_matches_scipy_sqrtm_closed_form():
    rng = np.random.default_rng(0)
    d = 24
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = random_spd(rng, d), random_spd(rng, d)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_identity_covariances_is_squared_mean_shift():
    d = 16
    shift = np.arange(d) / 4.0
    assert frechet_distance(np.zeros(d), np.eye(d), shift, np.eye(d)) == pytest.approx(np.sum(shift**2))


def test_frechet_distance_diagonal_covariances_closed_form():
    rng = np.random.default_rng(1)
    d = 10
    a, b = rng.uniform(0.1, 3, d), rng.uniform(0.1, 3, d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)


def test_fid_of_a_set_with_itself_is_zero_and_a_shift_gives_its_squared_norm():
    rng = np.random.default_rng(2)
    feats = rng.normal(size=(500, 32)) @ rng.normal(size=(32, 32))
    shift = rng.normal(size=32)
    assert abs(fid_from_features(feats, feats)) < 1e-8
    assert fid_from_features(feats, feats + shift) == pytest.approx(np.sum(shift**2), rel=1e-8)


def test_fid_with_fewer_samples_than_dimensions_stays_real_and_exact():
    rng = np.random.default_rng(3)
    feats = rng.normal(size=(20, 64))  # singular covariance
    shift = np.full(64, 0.5)
    assert fid_from_features(feats, feats + shift) == pytest.approx(np.sum(shift**2), rel=1e-8)


@pytest.mark.parametrize("n_a,n_b", [(15, 40), (90, 70)])  # sample-space shortcut, then covariances
def test_fid_from_features_matches_sqrtm_on_both_paths(n_a, n_b):
    rng = np.random.default_rng(11)
    a = rng.normal(size=(n_a, 64)) @ rng.normal(size=(64, 64))
    b = rng.normal(size=(n_b, 64)) + 0.2
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False, bias=True), np.cov(b, rowvar=False, bias=True)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2) - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2)).real
    assert fid_from_features(a, b) == pytest.approx(expected, rel=1e-6)


def test_mean_cov_normalises_by_n():
    x = np.random.default_rng(4).normal(size=(50, 5))
    mean, cov = mean_cov(x)
    np.testing.assert_allclose(mean, x.mean(0))
    np.testing.assert_allclose(cov, np.cov(x, rowvar=False, bias=True), atol=1e-12)


def test_frechet_distance_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="sigma2"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(4))


# --- KID -----------------------------------------------------------------------------------------


def plain_unbiased_mmd2(x, y):
    """Unbiased MMD^2 with the cubic polynomial kernel, written out term by term."""
    d = x.shape[1]

    def k(u, v):
        return (np.dot(u, v) / d + 1) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_kid_equals_plain_unbiased_mmd_when_the_subset_is_the_whole_set():
    rng = np.random.default_rng(5)
    a = rng.normal(size=(30, 8))
    b = rng.normal(loc=0.3, size=(30, 8))
    # m = 30 = both set sizes: every subset is a permutation of the whole set.
    assert kid_from_features(a, b, num_subsets=3, device="cpu") == pytest.approx(
        plain_unbiased_mmd2(a, b), rel=1e-10
    )


def test_kid_subsets_of_size_min_n_average_to_the_full_set_u_statistic():
    rng = np.random.default_rng(6)
    a = rng.normal(size=(40, 4))
    b = rng.normal(loc=0.5, size=(25, 4))
    # Subsets of min(40, 25) = 25 rows of `a`: the U-statistic's expectation is the full-set value.
    kid = kid_from_features(a, b, num_subsets=3000, max_subset_size=1000, seed=1, device="cpu")
    assert kid == pytest.approx(plain_unbiased_mmd2(a, b), rel=0.02)


def test_kid_is_seeded_and_near_zero_for_one_distribution():
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(300, 16)), rng.normal(size=(300, 16))
    k1 = kid_from_features(a, b, num_subsets=20, max_subset_size=100, seed=3, device="cpu")
    assert k1 == kid_from_features(a, b, num_subsets=20, max_subset_size=100, seed=3, device="cpu")
    assert k1 != kid_from_features(a, b, num_subsets=20, max_subset_size=100, seed=4, device="cpu")
    shifted = kid_from_features(a, b + 1.0, num_subsets=20, max_subset_size=100, seed=3, device="cpu")
    assert abs(k1) < 0.05 * shifted


# --- precision / recall --------------------------------------------------------------------------


def test_precision_recall_on_a_line_of_points():
    real = np.stack([np.arange(10.0), np.zeros(10)], axis=1)
    # k=3 radii: 3 at both ends, 2 inside. 0.5 and 4.5 lie in balls; 20 and 30 in none.
    gen = np.array([[0.5, 0], [4.5, 0], [20, 0], [30, 0]])
    precision, recall = precision_recall(real, gen, k=3, device="cpu")
    assert precision == 0.5
    # Each generated ball reaches its 3rd neighbour among the 4 and covers every real point.
    assert recall == 1.0


def test_precision_recall_when_gen_covers_one_of_two_real_clusters():
    rng = np.random.default_rng(8)
    cluster_a = rng.normal(size=(10, 5))
    cluster_b = rng.normal(size=(10, 5)) + 100
    precision, recall = precision_recall(
        np.concatenate([cluster_a, cluster_b]), cluster_a.copy(), k=3, device="cpu"
    )
    assert (precision, recall) == (1.0, 0.5)


def test_precision_recall_matches_brute_force_and_is_batch_invariant():
    rng = np.random.default_rng(9)
    real = rng.normal(size=(60, 6)).astype(np.float32)
    gen = (rng.normal(size=(45, 6)) * 1.3 + 0.4).astype(np.float32)

    def brute(manifold, probes, k=3):
        radii = np.sort(scipy.spatial.distance.cdist(manifold, manifold), axis=1)[:, k]
        return np.mean((scipy.spatial.distance.cdist(probes, manifold) <= radii[None]).any(axis=1))

    expected = (brute(real, gen), brute(gen, real))
    assert precision_recall(real, gen, k=3, device="cpu") == pytest.approx(expected)
    assert precision_recall(
        real, gen, k=3, row_batch_size=7, col_batch_size=5, device="cpu"
    ) == pytest.approx(expected)


def test_precision_recall_needs_more_points_than_k():
    with pytest.raises(ValueError, match="k=3"):
        precision_recall(np.zeros((3, 2)), np.ones((10, 2)), k=3)


# --- Inception Score -----------------------------------------------------------------------------


def test_inception_score_of_confident_diverse_predictions_is_the_class_count():
    probs = np.tile(np.eye(10), (10, 1))  # each split of 10 holds every class once, one-hot
    mean, std = inception_score(probs, num_splits=10)
    assert mean == pytest.approx(10.0)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_inception_score_of_uninformative_predictions_is_one():
    mean, _ = inception_score(np.full((50, 7), 1 / 7), num_splits=5)
    assert mean == pytest.approx(1.0)


def test_inception_score_uses_contiguous_splits():
    # First half: one class everywhere (IS 1); second half: two classes equally (IS 2).
    probs = np.concatenate([np.tile([1.0, 0.0], (10, 1)), np.tile(np.eye(2), (5, 1))])
    mean, std = inception_score(probs, num_splits=2)
    assert (mean, std) == pytest.approx((1.5, 0.5))


# --- feature cache -------------------------------------------------------------------------------


def test_cached_dataset_features_computes_once_and_stores_npy_and_json(tmp_path):
    calls = []
    features = np.random.default_rng(10).normal(size=(7, 3)).astype(np.float32)

    def compute():
        calls.append(1)
        return features

    first = cached_dataset_features(tmp_path, "shards:abc123", "inception|deadbeef", compute)
    second = cached_dataset_features(tmp_path, "shards:abc123", "inception|deadbeef", compute)
    np.testing.assert_array_equal(first, features)
    np.testing.assert_array_equal(second, features)
    assert len(calls) == 1
    (npy,) = tmp_path.glob("*.npy")
    meta = json.loads(npy.with_suffix(".json").read_text())
    assert (
        meta["key"] == "shards:abc123"
        and meta["detector"] == "inception|deadbeef"
        and meta["shape"] == [7, 3]
    )
    assert not list(tmp_path.glob("*.part"))

    cached_dataset_features(tmp_path, "shards:abc123", "vgg16|0123", compute)
    assert len(calls) == 2  # another detector is another entry


def test_cached_dataset_features_recomputes_when_metadata_is_missing(tmp_path):
    cached_dataset_features(tmp_path, "k", "d", lambda: np.zeros((2, 2)))
    next(tmp_path.glob("*.json")).unlink()
    assert load_cached_features(tmp_path, "k", "d") is None
    assert cached_dataset_features(tmp_path, "k", "d", lambda: np.ones((2, 2))).sum() == 4
