"""The pieces of the training objective: random transforms, the losses of the paper, VGG19 and its registry
entry, the discriminator (loaded from the paper's code's own checkpoint), optimiser states."""

from __future__ import annotations

import dataclasses
import fractions
import hashlib

import numpy as np
import pytest
import torch
from httpserver import LocalServer
from train_media import random_vgg19

from fomm_lab.engine.checkpoint import read_checkpoint
from fomm_lab.engine.config import load_config
from fomm_lab.engine.keypoints import Keypoints
from fomm_lab.errors import CheckpointError, DownloadError
from fomm_lab.hub.registry import MODELS, TRAINING_WEIGHTS, VGG19_WEIGHTS, Mirror
from fomm_lab.train import losses
from fomm_lab.train.checkpoint import Optimizers, load_networks, load_optimizers
from fomm_lab.train.discriminator import MultiScaleDiscriminator
from fomm_lab.train.model import build_training_networks
from fomm_lab.train.params import DiscriminatorParams, TransformParams, training_config
from fomm_lab.train.transforms import RandomTransform
from fomm_lab.train.vgg import FEATURE_LAYERS, VGG19Features, ensure_vgg19, load_vgg19, read_vgg19

TPS = TransformParams(sigma_affine=0.05, sigma_tps=0.005, points_tps=5)

# PyTorch's published vgg19 ``features``: the 16 convolutions, at these indices of the sequence, with these
# (out, in) channels; 3x3 kernels.
PUBLISHED_VGG19 = {0: (64, 3), 2: (64, 64), 5: (128, 64), 7: (128, 128), 10: (256, 128), 12: (256, 256),
                   14: (256, 256), 16: (256, 256), 19: (512, 256), 21: (512, 512), 23: (512, 512), 25: (512, 512),
                   28: (512, 512), 30: (512, 512), 32: (512, 512), 34: (512, 512)}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ------------------------------------------------------------------------------------ transforms


def test_zero_noise_is_the_identity():
    transform = RandomTransform(2, TransformParams(sigma_affine=0.0, sigma_tps=0.0, points_tps=5))
    points = torch.rand(2, 7, 2) * 2 - 1
    torch.testing.assert_close(transform.warp_coordinates(points), points)
    torch.testing.assert_close(transform.jacobian(points), torch.eye(2).expand(2, 7, 2, 2))
    frame = torch.rand(2, 3, 16, 20)
    torch.testing.assert_close(transform.warp_frame(frame), frame, atol=1e-5, rtol=0)


def test_jacobian_is_the_derivative_of_the_warp():
    transform = RandomTransform(3, TransformParams(sigma_affine=0.1, sigma_tps=0.05, points_tps=4),
                                generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    points = (torch.rand(3, 5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 2 - 1)
    numeric = torch.zeros(3, 5, 2, 2, dtype=torch.float64)
    for j in range(2):
        step = torch.zeros_like(points)
        step[..., j] = 1e-6
        numeric[..., j] = (transform.warp_coordinates(points + step) - transform.warp_coordinates(points - step)) / 2e-6
    torch.testing.assert_close(transform.jacobian(points), numeric, atol=1e-7, rtol=1e-6)


def test_frame_warp_and_coordinate_warp_agree():
    """A bright dot at p in X appears in Y = X o T at the point y with T(y) = p."""
    h = w = 65
    grid_y, grid_x = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    p = torch.tensor([0.3, -0.2])
    frame = torch.exp(-((grid_x - p[0]) ** 2 + (grid_y - p[1]) ** 2) / (2 * 0.03**2)).expand(1, 1, h, w)
    transform = RandomTransform(1, TransformParams(sigma_affine=0.15, sigma_tps=0.01, points_tps=5),
                                generator=torch.Generator().manual_seed(4))
    warped = transform.warp_frame(frame.contiguous())[0, 0]
    weights = warped / warped.sum()
    found = torch.stack([(weights * grid_x).sum(), (weights * grid_y).sum()])  # the dot's centre in Y
    back = transform.warp_coordinates(found.view(1, 1, 2))[0, 0]
    assert torch.linalg.norm(back - p) < 0.01  # within a third of a pixel
    assert torch.linalg.norm(found - p) > 0.05  # and the transform did move it


def test_rotation_turns_the_affine_part_and_leaves_the_papers_draws_alone():
    plain = RandomTransform(64, TPS, generator=torch.Generator().manual_seed(3))
    turned = RandomTransform(64, TransformParams(sigma_affine=0.05, sigma_tps=0.005, points_tps=5, rotation=30),
                             generator=torch.Generator().manual_seed(3))
    assert plain.control_weights is not None and turned.control_weights is not None
    torch.testing.assert_close(turned.control_weights, plain.control_weights)  # the same TPS draws
    # turned = R @ plain, R a rotation of at most 30 degrees, of both spreads of angles
    turn = turned.theta[:, :, :2] @ torch.linalg.inv(plain.theta[:, :, :2])
    torch.testing.assert_close(turn @ turn.transpose(1, 2), torch.eye(2).expand(64, 2, 2), atol=1e-5, rtol=0)
    torch.testing.assert_close(turned.theta[:, :, 2:], turn @ plain.theta[:, :, 2:], atol=1e-6, rtol=0)
    angles = torch.rad2deg(torch.atan2(turn[:, 1, 0], turn[:, 0, 0]))
    assert angles.abs().max() <= 30 and angles.min() < -15 and angles.max() > 15
    affine = RandomTransform(64, TransformParams(sigma_affine=0.05, rotation=30),
                             generator=torch.Generator().manual_seed(3))  # without TPS its jacobian is R A
    points = torch.rand(64, 5, 2) * 2 - 1
    jacobian = affine.jacobian(points)
    torch.testing.assert_close(jacobian, affine.theta[:, None, :, :2].expand_as(jacobian))
    assert torch.rad2deg(torch.atan2(jacobian[:, 0, 1, 0], jacobian[:, 0, 0, 0])).abs().max() > 15


def test_equivariance_losses_vanish_for_equivariant_keypoints():
    transform = RandomTransform(2, TPS, generator=torch.Generator().manual_seed(2))
    kp_y = Keypoints(torch.rand(2, 10, 2) * 1.6 - 0.8, torch.eye(2).repeat(2, 10, 1, 1) + 0.1 * torch.rand(2, 10, 2, 2))
    exact_x = Keypoints(transform.warp_coordinates(kp_y.value), transform.jacobian(kp_y.value) @ kp_y.jacobian)
    assert losses.equivariance_value_loss(exact_x, kp_y, transform, 10).item() < 1e-6
    assert losses.equivariance_jacobian_loss(exact_x, kp_y, transform, 10).item() < 1e-5
    moved = Keypoints(exact_x.value + 0.05, exact_x.jacobian @ torch.tensor([[1.2, 0.0], [0.0, 1.0]]))
    assert losses.equivariance_value_loss(moved, kp_y, transform, 10).item() == pytest.approx(10 * 0.05, rel=1e-4)
    # (J^X)^-1 (dT J^Y) = diag(1/1.2, 1): |I - that| averages to (1 - 1/1.2) / 4
    assert losses.equivariance_jacobian_loss(moved, kp_y, transform, 1).item() == pytest.approx((1 - 1 / 1.2) / 4,
                                                                                               rel=1e-4)


# ---------------------------------------------------------------------------------------- losses


def test_lsgan_and_feature_matching_values():
    maps = [torch.full((2, 4, 8, 8), 0.5), torch.full((2, 8, 4, 4), 1.0)]
    real = {1: (maps, torch.ones(2, 1, 5, 5))}
    fake = {1: ([m + 0.25 for m in maps], torch.full((2, 1, 5, 5), 0.5))}
    assert losses.generator_gan_loss(fake, 2.0).item() == pytest.approx(2 * 0.25)
    assert losses.discriminator_gan_loss(real, fake, 1.0).item() == pytest.approx(0.25)  # (1-1)^2 + 0.5^2
    assert losses.discriminator_gan_loss(real, {1: (maps, torch.zeros(2, 1, 5, 5))}, 1.0).item() == 0.0
    assert losses.feature_matching_loss(real, fake, (10, 0)).item() == pytest.approx(2.5)
    assert losses.feature_matching_loss(real, fake, (10, 4)).item() == pytest.approx(3.5)


def test_perceptual_loss_compares_every_scale_and_layer():
    torch.manual_seed(0)
    vgg = VGG19Features(3)
    pyramid = losses.ImagePyramid((1, 0.5))
    real = torch.rand(2, 3, 32, 32)
    fake = torch.rand(2, 3, 32, 32, requires_grad=True)
    assert set(pyramid(real)) == {1, 0.5} and pyramid(real)[0.5].shape == (2, 3, 16, 16)
    same = losses.perceptual_loss(vgg, pyramid(real), pyramid(real), (10, 10, 10))
    assert same.item() == 0.0
    value = losses.perceptual_loss(vgg, pyramid(fake), pyramid(real), (10, 10, 10))
    expected = sum(10 * (a - b).abs().mean() for s in (1, 0.5)
                   for a, b in zip(vgg(pyramid(fake)[s]), vgg(pyramid(real)[s])))
    torch.testing.assert_close(value, expected)
    value.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert all(p.grad is None for p in vgg.parameters())  # the loss network stays fixed
    only_first = losses.perceptual_loss(vgg, pyramid(fake), pyramid(real), (10, 0, 0))
    assert 0 < only_first.item() < value.item()


def test_pixel_loss_is_the_weighted_mean_absolute_difference_of_every_scale():
    pyramid = losses.ImagePyramid((1, 0.5))
    real = pyramid(torch.rand(2, 3, 32, 32))
    assert losses.pixel_loss(real, real, 5.0).item() == 0.0
    fake = {scale: image + torch.where(torch.rand_like(image) < 0.5, 0.1, -0.1) for scale, image in real.items()}
    torch.testing.assert_close(losses.pixel_loss(fake, real, 5.0), torch.tensor(5.0 * 2 * 0.1))
    only_full = losses.pixel_loss({1: fake[1]}, real, 5.0)  # the levels given are the levels compared
    torch.testing.assert_close(only_full, torch.tensor(5.0 * 0.1))


def test_keypoint_prior_pushes_apart_only_keypoints_closer_than_the_distance():
    apart = torch.tensor([[[0.0, 0.0], [0.5, 0.0], [0.0, 0.5]]])
    assert losses.keypoint_prior_loss(apart, 0.3, 10.0).item() == 0.0  # every pair 0.5 or more apart
    close = torch.tensor([[[0.0, 0.0], [0.1, 0.0], [0.0, 0.5]]], requires_grad=True)
    value = losses.keypoint_prior_loss(close, 0.3, 10.0)
    torch.testing.assert_close(value, torch.tensor(10.0 * 2 * 0.2 / 6))  # one pair 0.2 short, counted both ways
    value.backward()
    assert close.grad[0, 0, 0] > 0 > close.grad[0, 1, 0]  # descent moves the two apart along x ...
    assert close.grad[0, 2].abs().max() == 0  # ... and leaves the far one
    same = torch.zeros(1, 2, 2, requires_grad=True)
    losses.keypoint_prior_loss(same, 0.3, 1.0).backward()
    assert torch.isfinite(same.grad).all()  # keypoints on one spot: a finite gradient
    with pytest.raises(ValueError, match="two keypoints or more"):
        losses.keypoint_prior_loss(torch.zeros(1, 1, 2), 0.3, 1.0)


# -------------------------------------------------------------------------------------------- vgg


def test_vgg19_has_the_published_names_and_shapes():
    state = VGG19Features().state_dict()
    expected = {f"features.{i}.weight": (out, inp, 3, 3) for i, (out, inp) in PUBLISHED_VGG19.items() if i <= 28}
    expected |= {f"features.{i}.bias": (out,) for i, (out, _) in PUBLISHED_VGG19.items() if i <= 28}
    assert {k: tuple(v.shape) for k, v in state.items()} == expected  # up to relu5_1: conv5_1 is index 28
    taps = VGG19Features()(torch.rand(1, 3, 32, 32))
    assert [tuple(t.shape) for t in taps] == [(1, 64, 32, 32), (1, 128, 16, 16), (1, 256, 8, 8), (1, 512, 4, 4),
                                              (1, 512, 2, 2)]
    assert FEATURE_LAYERS == (1, 6, 11, 20, 29)
    assert list(VGG19Features(2).state_dict()) == ["features.0.weight", "features.0.bias", "features.2.weight",
                                                    "features.2.bias", "features.5.weight", "features.5.bias"]


def test_vgg19_file_loads_by_name(tmp_path):
    path = random_vgg19(tmp_path / "vgg19.pth")
    state = torch.load(path, weights_only=True)
    assert set(state) == {f"features.{i}.{p}" for i in PUBLISHED_VGG19 for p in ("weight", "bias")}
    state["classifier.0.weight"] = torch.zeros(4, 4)  # the published file's classifier is not used
    torch.save(state, path)
    vgg = load_vgg19(path)
    torch.testing.assert_close(vgg.features[28].weight, state["features.28.weight"])
    assert not any(p.requires_grad for p in vgg.parameters())
    x = torch.rand(1, 3, 16, 16)
    manual = torch.relu(torch.nn.functional.conv2d((x - vgg.mean) / vgg.std, state["features.0.weight"],
                                                   state["features.0.bias"], padding=1))
    torch.testing.assert_close(vgg(x)[0], manual)
    del state["features.28.weight"]
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"does not hold VGG19's feature layers") as info:
        load_vgg19(path)
    assert "features.28.weight" in info.value.render()
    assert load_vgg19(path, layers=4).features[19].weight.shape == (512, 256, 3, 3)  # fewer layers need less


def test_vgg19_reading_refuses_non_weights(tmp_path):
    pickled = tmp_path / "code.pth"
    torch.save({"features.0.weight": torch.zeros(1), "hook": fractions.Fraction(1, 3)}, pickled)  # a Python object
    with pytest.raises(CheckpointError, match="hold objects other than tensors"):
        read_vgg19(pickled)
    other = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(1)}, other)
    with pytest.raises(CheckpointError, match="is not a VGG19 state dict"):
        read_vgg19(other)
    with pytest.raises(CheckpointError, match="do not exist"):
        read_vgg19(tmp_path / "missing.pth")


def test_vgg19_registry_entry():
    assert VGG19_WEIGHTS.name == "vgg19" and VGG19_WEIGHTS.config is None
    assert VGG19_WEIGHTS.mirrors[0].url == "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
    assert VGG19_WEIGHTS.sha256_prefix == "dcbb9e9d" and VGG19_WEIGHTS.filename == "vgg19-dcbb9e9d.pth"
    assert VGG19_WEIGHTS in TRAINING_WEIGHTS
    assert "vgg19" not in MODELS  # `fomm-lab models` lists animation checkpoints only


def test_models_listing_leaves_vgg19_out(capsys, tmp_path):
    from fomm_lab.cli import main

    assert main(["models", "--cache-dir", str(tmp_path)]) == 0
    assert "vgg19" not in capsys.readouterr().out


def test_vgg19_is_fetched_through_the_registry_into_the_cache(tmp_path):
    weights = random_vgg19(tmp_path / "served.pth", upto=1).read_bytes()
    prefix = hashlib.sha256(weights).hexdigest()[:8]
    cache = tmp_path / "cache"
    with LocalServer() as server:
        url = server.add("/models/vgg19-random.pth", weights)
        entry = dataclasses.replace(VGG19_WEIGHTS, mirrors=(Mirror(url),), sha256_prefix=prefix)
        path = ensure_vgg19(cache, progress=False, entry=entry)
        assert path == cache / VGG19_WEIGHTS.filename and path.read_bytes() == weights
        assert len(server.hits("/models/vgg19-random.pth")) == 1
        assert ensure_vgg19(cache, progress=False, entry=entry) == path  # cached: no second request
        assert len(server.hits("/models/vgg19-random.pth")) == 1
        assert load_vgg19(path, layers=1).features[0].weight.shape == (64, 3, 3, 3)
        wrong = dataclasses.replace(entry, sha256_prefix="dcbb9e9d")
        with pytest.raises(DownloadError, match="vgg19") as info:
            ensure_vgg19(tmp_path / "other-cache", progress=False, entry=wrong)
        assert "should start with dcbb9e9d" in info.value.render()
        assert not (tmp_path / "other-cache" / VGG19_WEIGHTS.filename).exists()


# ------------------------------------------------------------------------ discriminator, optimisers


def official_tiny(golden_dir, frame_shape=(128, 128, 3)):
    """The golden tiny-vox topology (the paper's code made its checkpoint) with a train_params section."""
    import yaml

    from fomm_lab.engine.config import parse_config

    raw = yaml.safe_load((golden_dir / "tiny-vox.yaml").read_text())
    raw["dataset_params"] = {"frame_shape": list(frame_shape)}
    raw["train_params"] = {"num_epochs": 1, "lr_generator": 2e-4, "lr_discriminator": 2e-4, "lr_kp_detector": 2e-4,
                           "batch_size": 2, "loss_weights": {"perceptual": [10]}}
    return training_config(parse_config(raw, "tiny-vox", golden_dir / "tiny-vox.yaml"))


def test_discriminator_loads_the_papers_checkpoint_strictly(golden_dir):
    config = official_tiny(golden_dir)
    networks = build_training_networks(config)
    data = read_checkpoint(golden_dir / "tiny-vox-cpk.pth.tar")
    assert list(networks.discriminator.state_dict()) == list(data["discriminator"])  # same names, same order
    load_networks(data, golden_dir / "tiny-vox-cpk.pth.tar", networks, "tiny-vox", need_discriminator=True)
    for key, value in data["discriminator"].items():
        torch.testing.assert_close(networks.discriminator.state_dict()[key], value)
    disc = networks.discriminator.eval()
    image = torch.rand(2, 3, 64, 64)
    out = disc({1: image})
    features, scores = out[1]
    assert [tuple(f.shape) for f in features] == [(2, 8, 30, 30), (2, 16, 13, 13), (2, 16, 5, 5), (2, 16, 2, 2)]
    assert scores.shape == (2, 1, 2, 2)
    # spectral norm: the convolution uses weight_orig / sigma, sigma = u^T W v from the stored vectors
    first = data["discriminator"]
    w = first["discs.1.down_blocks.0.conv.weight_orig"]
    u, v = first["discs.1.down_blocks.0.conv.weight_u"], first["discs.1.down_blocks.0.conv.weight_v"]
    sigma = u @ w.reshape(w.shape[0], -1) @ v
    expected = torch.nn.functional.leaky_relu(torch.nn.functional.conv2d(
        image, w / sigma, first["discs.1.down_blocks.0.conv.bias"]), 0.2)
    torch.testing.assert_close(features[0], torch.nn.functional.avg_pool2d(expected, 2), atol=1e-5, rtol=1e-4)


def test_discriminator_with_keypoints_and_scales():
    params = DiscriminatorParams(scales=(1, 0.5), block_expansion=8, max_features=32, num_blocks=3, use_kp=True)
    disc = MultiScaleDiscriminator(params, num_channels=3, num_kp=5)
    assert set(disc.discs) == {"1", "0-5"}
    assert disc.discs["1"].down_blocks[0].conv.weight.shape == (16, 3 + 5, 4, 4)  # image + 5 heatmaps
    assert not any("weight_orig" in k for k in disc.state_dict())  # sn: false
    kp = Keypoints(torch.zeros(2, 5, 2))
    out = disc({1: torch.rand(2, 3, 64, 64), 0.5: torch.rand(2, 3, 32, 32)}, kp)
    assert out[1][1].shape == (2, 1, 10, 10) and out[0.5][1].shape == (2, 1, 2, 2)  # 4x4 convs, no padding
    with pytest.raises(ValueError, match="needs the driving keypoints"):
        disc({1: torch.rand(1, 3, 64, 64), 0.5: torch.rand(1, 3, 32, 32)})


def test_optimiser_states_of_the_papers_checkpoint_fit(golden_dir):
    networks = build_training_networks(official_tiny(golden_dir))
    data = read_checkpoint(golden_dir / "tiny-vox-cpk.pth.tar")  # weights_only=True: optimiser states too
    optimizers = Optimizers(*(torch.optim.Adam(getattr(networks, n).parameters(), lr=1e-4, betas=(0.5, 0.999))
                              for n in ("generator", "kp_detector", "discriminator")))
    load_optimizers(data, golden_dir / "tiny-vox-cpk.pth.tar", optimizers)
    for name, optimizer in optimizers.named().items():
        assert len(optimizer.param_groups[0]["params"]) == len(data[name]["param_groups"][0]["params"])
    other = build_training_networks(dataclasses.replace(official_tiny(golden_dir), model=load_config("vox-256")))
    mismatched = Optimizers(*(torch.optim.Adam(getattr(other, n).parameters()) for n in
                              ("generator", "kp_detector", "discriminator")))
    from fomm_lab.errors import TrainingError

    with pytest.raises(TrainingError, match="does not fit the networks of this config"):
        load_optimizers(data, golden_dir / "tiny-vox-cpk.pth.tar", mismatched)


def test_checkpoint_that_does_not_fit_is_explained(golden_dir):
    config = official_tiny(golden_dir)
    networks = build_training_networks(dataclasses.replace(config, model=load_config("mgif-256")))
    data = read_checkpoint(golden_dir / "tiny-vox-cpk.pth.tar")
    with pytest.raises(CheckpointError, match="does not fit config mgif") as info:
        load_networks(data, golden_dir / "tiny-vox-cpk.pth.tar", networks, "mgif-256", need_discriminator=False)
    assert "shape (file vs config)" in info.value.render()


def test_sync_batchnorm_is_batchnorm_in_one_process():
    from fomm_lab.train.syncbn import SyncBatchNorm2d, convert_batchnorm

    torch.manual_seed(0)
    plain = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    plain[1].weight.data.uniform_(0.5, 1.5)
    converted = convert_batchnorm(torch.nn.Sequential(*[m for m in __import__("copy").deepcopy(plain)]))
    assert isinstance(converted[1], SyncBatchNorm2d)
    assert list(converted.state_dict()) == list(plain.state_dict())
    x = torch.rand(3, 3, 8, 8)
    torch.testing.assert_close(converted(x), plain(x))
    torch.testing.assert_close(converted[1].running_var, plain[1].running_var)
    assert np.isclose(float(converted[1].num_batches_tracked), 1)
