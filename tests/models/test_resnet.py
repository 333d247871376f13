"""Tests for dl.models.resnet: published parameter counts, shapes, batch norm."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl.models.resnet import (
    BasicBlock,
    Bottleneck,
    ResNet,
    ResNet18,
    ResNet20,
    ResNet32,
    ResNet34,
    ResNet50,
    ResNet56,
    ResNet101,
    ResNet152,
)


def count(tree):
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(tree))


def abstract_variables(model, input_shape):
    """Variable shapes from `model.init` without compiling or running it."""
    x = jax.ShapeDtypeStruct(input_shape, jnp.float32)
    return jax.eval_shape(model.init, jax.random.key(0), x)


# torchvision's resnet18 ... resnet152, 1000 classes.
@pytest.mark.parametrize(
    "model_fn, expected",
    [
        (ResNet18, 11_689_512),
        (ResNet34, 21_797_672),
        (ResNet50, 25_557_032),
        (ResNet101, 44_549_160),
        (ResNet152, 60_192_808),
    ],
)
def test_imagenet_resnet_param_counts(model_fn, expected):
    variables = abstract_variables(model_fn(), (1, 224, 224, 3))
    assert count(variables["params"]) == expected
    assert "batch_stats" in variables


def cifar_resnet_params(n, num_classes=10):
    """He et al. 2015 section 4.2 by hand: 3x3 convs without bias, BN scale + bias per
    channel, option A shortcuts (no parameters), dense 64 -> classes."""
    total = 3 * 3 * 3 * 16 + 2 * 16
    c_in = 16
    for width in (16, 32, 64):
        for _ in range(n):
            total += 3 * 3 * c_in * width + 2 * width
            total += 3 * 3 * width * width + 2 * width
            c_in = width
    return total + 64 * num_classes + num_classes


# Paper Table 6: ResNet-20 0.27M, ResNet-32 0.46M, ResNet-56 0.85M parameters.
@pytest.mark.parametrize(
    "model_fn, n, paper_millions",
    [(ResNet20, 3, 0.27), (ResNet32, 5, 0.46), (ResNet56, 9, 0.85)],
)
def test_cifar_resnet_param_counts(model_fn, n, paper_millions):
    expected = cifar_resnet_params(n)
    assert round(expected / 1e6, 2) == paper_millions
    variables = abstract_variables(model_fn(), (1, 32, 32, 3))
    assert count(variables["params"]) == expected


def test_small_imagenet_resnets_shapes_and_projections():
    x = jnp.ones((2, 32, 32, 3))
    for block, out_channels in ((BasicBlock, 8), (Bottleneck, 32)):
        model = ResNet(stage_sizes=(1, 1), block=block, num_filters=4, num_outputs=7)
        variables = abstract_variables(model, x.shape)
        # Stage 2 doubles the filters and halves the size, so it needs a projection.
        assert "proj_conv" in variables["params"]["stage2_block1"]
        assert variables["params"]["head"]["kernel"].shape == (out_channels, 7)
        out = jax.eval_shape(model.apply, variables, x)
        assert out.shape == (2, 7) and out.dtype == jnp.float32


def test_block_given_by_name():
    model = ResNet(stage_sizes=(1,), block="bottleneck", num_filters=4)
    variables = abstract_variables(model, (1, 32, 32, 3))
    assert "conv3" in variables["params"]["stage1_block1"]
    with pytest.raises(ValueError, match="block"):
        ResNet(block="dense").init(jax.random.key(0), jnp.ones((1, 32, 32, 3)))


def test_bad_rank_names_shapes():
    with pytest.raises(ValueError, match=r"\[batch, height, width, channels\].*\(2, 32\)"):
        ResNet20().init(jax.random.key(0), jnp.ones((2, 32)))


def test_resnet20_shape_and_batch_norm_train_updates_stats_eval_uses_them():
    model = ResNet20()
    x = 3.0 + 2.0 * jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
    variables = model.init(jax.random.key(0), x)
    stats = variables["batch_stats"]

    train_out, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    assert train_out.shape == (2, 10)
    new_stats = updates["batch_stats"]
    changed = jax.tree.map(lambda a, b: not np.allclose(a, b), stats, new_stats)
    assert all(jax.tree.leaves(changed))

    eval_out, eval_updates = model.apply(variables, x, train=False, mutable=["batch_stats"])
    same = jax.tree.map(lambda a, b: np.array_equal(a, b), stats, eval_updates["batch_stats"])
    assert all(jax.tree.leaves(same))
    assert not np.allclose(train_out, eval_out)

    # Eval mode normalises with the stored running averages.
    updated = {"params": variables["params"], "batch_stats": new_stats}
    assert not np.allclose(eval_out, model.apply(updated, x, train=False))
