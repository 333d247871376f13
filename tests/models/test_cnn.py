"""Tests for dl.models.cnn: the worked convolution, shapes, parameter counts, jit."""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl.models.cnn import CNN, AlexNet, AlexNetTiny, LeNet5, adaptive_avg_pool
from dl.models.conv import Conv


def param_count(model, input_shape):
    """Counts 'params' entries without compiling or running the model."""
    x = jax.ShapeDtypeStruct(input_shape, jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(variables["params"]))


def test_lecture_worked_convolution():
    image = np.array(
        [
            [1, 1, 1, 0, 0],
            [0, 1, 1, 1, 0],
            [0, 0, 1, 1, 1],
            [0, 0, 1, 1, 0],
            [0, 1, 1, 0, 0],
        ],
        np.float32,
    )
    kernel = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], np.float32)
    params = {"params": {"kernel": jnp.asarray(kernel.reshape(3, 3, 1, 1))}}
    expected = np.array([[4, 3, 4], [2, 4, 3], [2, 3, 4]], np.float32)
    for conv in (
        nn.Conv(1, (3, 3), strides=1, padding="VALID", use_bias=False),
        Conv(1, (3, 3), padding="VALID", use_bias=False, implementation="xla"),
        Conv(1, (3, 3), padding="VALID", use_bias=False, implementation="patches"),
        Conv(1, (3, 3), padding="VALID", use_bias=False, implementation="banded"),
    ):
        y = conv.apply(params, jnp.asarray(image.reshape(1, 5, 5, 1)))  # [1, 3, 3, 1]
        np.testing.assert_array_equal(np.asarray(y)[0, :, :, 0], expected)


@pytest.mark.parametrize(
    "kernel,strides,padding,cin,size",
    [
        ((5, 5), 1, "VALID", 1, (28, 28)),
        ((3, 3), 1, "SAME", 3, (8, 8)),
        ((3, 3), 2, "SAME", 2, (9, 7)),  # odd sizes: SAME pads the extra pixel at the end
        ((11, 11), 4, 2, 3, (35, 35)),  # AlexNet's stem
        ((7, 7), 2, ((3, 3), (3, 3)), 3, (16, 16)),  # ResNet's stem
        ((1, 3), (1, 2), "VALID", 6, (5, 9)),
        ((5, 5), 1, "VALID", 6, (12, 12)),  # LeNet-5's second layer
        ((3, 2), (2, 3), ((1, 0), (2, 1)), 2, (11, 13)),  # uneven strides and padding
    ],
)
def test_patch_and_banded_convolutions_equal_xla_convolution_and_its_gradients(
    kernel, strides, padding, cin, size
):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, *size, cin)), jnp.float32)
    models = {
        impl: Conv(4, kernel, strides=strides, padding=padding, implementation=impl)
        for impl in ("xla", "patches", "banded")
    }
    variables = models["xla"].init(jax.random.key(0), x)
    # flax's own Conv is the reference for the parameters and the output.
    ref = nn.Conv(4, kernel, strides=strides, padding=padding).apply(variables, x)
    outs, grads = {}, {}
    for impl, model in models.items():
        # Compiled once each: run op by op, the patch and banded forms of an
        # 11x11 kernel dispatch hundreds of small operations.
        outs[impl] = jax.jit(model.apply)(variables, x)
        grads[impl] = jax.jit(
            jax.grad(lambda v, x, m=model: jnp.sum(jnp.sin(m.apply(v, x))), (0, 1))
        )(variables, x)
    for impl in models:
        np.testing.assert_allclose(outs[impl], ref, atol=1e-5, err_msg=impl)
    for impl in ("patches", "banded"):
        for a, b in zip(jax.tree.leaves(grads["xla"]), jax.tree.leaves(grads[impl]), strict=True):
            np.testing.assert_allclose(a, b, atol=1e-4, err_msg=impl)


@pytest.mark.parametrize("block", [1, 2, 3, 5, 7, 8])
def test_banded_convolution_any_block_width_equals_xla(block):
    """Blocks that do not divide the output width pad it and crop the surplus."""
    from dl.models.conv import conv_banded

    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((3, 10, 11, 2)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((3, 4, 2, 5)), jnp.float32)
    for strides, padding in (((1, 1), "VALID"), ((2, 1), "SAME"), ((1, 2), "SAME")):
        ref = jax.lax.conv_general_dilated(
            x, kernel, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        out = jax.jit(lambda x, k, s=strides, p=padding: conv_banded(x, k, s, p, block=block))(
            x, kernel
        )
        np.testing.assert_allclose(out, ref, atol=1e-5, err_msg=f"{strides} {padding}")
    with pytest.raises(ValueError, match="block must be a positive number"):
        conv_banded(x, kernel, block=0)


def test_conv_implementation_is_checked_and_auto_picks_banded_for_few_channels_on_cpu():
    from dl.models.conv import resolve_implementation

    with pytest.raises(
        ValueError,
        match="unknown conv implementation 'fft'; known conv implementations: "
        "auto, banded, patches, xla",
    ):
        Conv(4, implementation="fft").init(jax.random.key(0), jnp.zeros((1, 4, 4, 1)))
    if jax.default_backend() == "cpu":
        assert resolve_implementation("auto", 1) == "banded"
        assert resolve_implementation("auto", 6, out_size=(8, 8)) == "banded"  # LeNet's second
        assert resolve_implementation("auto", 8, out_size=(64, 64)) == "xla"
        assert resolve_implementation("auto", 3, out_size=(224, 224)) == "banded"
        assert resolve_implementation("auto", 3, strides=2) == "xla"  # a strided stem
        assert resolve_implementation("auto", 64) == "xla"


def test_cnn_output_shape_and_rank3_input():
    model = CNN()
    x = jnp.ones((2, 8, 8, 1))
    variables = model.init(jax.random.key(0), x)
    assert model.apply(variables, x).shape == (2, 10)
    assert model.apply(variables, x[..., 0]).shape == (2, 10)


@pytest.mark.parametrize("shape", [(2, 8), (2, 8, 8, 1, 1)])
def test_cnn_bad_rank_names_shapes(shape):
    pattern = r"\[batch, height, width, channels\].*" + re.escape(str(shape))
    with pytest.raises(ValueError, match=pattern):
        CNN().init(jax.random.key(0), jnp.ones(shape))


def test_cnn_unknown_activation_and_pool():
    x = jnp.ones((1, 8, 8, 1))
    with pytest.raises(ValueError, match="activation"):
        CNN(activation="gelu").init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="pool"):
        CNN(pool="median").init(jax.random.key(0), x)


def test_cnn_variants_shapes():
    x = jnp.ones((2, 8, 8, 1))
    for model in (
        CNN(pool="avg", activation="tanh", dense_sizes=()),
        CNN(pool="none", activation="sigmoid", padding="VALID", conv_features=(4,)),
    ):
        variables = model.init(jax.random.key(0), x)
        assert model.apply(variables, x).shape == (2, 10)


def test_lenet5_param_count_by_formula():
    # 32x32x1 input, 'VALID' 5x5 convs: 32 -> 28 -> pool 14 -> 10 -> pool 5.
    expected = (
        (5 * 5 * 1 * 6 + 6)
        + (5 * 5 * 6 * 16 + 16)
        + (5 * 5 * 16 * 120 + 120)
        + (120 * 84 + 84)
        + (84 * 10 + 10)
    )
    assert param_count(LeNet5(), (1, 32, 32, 1)) == expected


def test_cnn_dropout_only_in_training():
    model = CNN(dropout_rate=0.5, conv_features=(4,), dense_sizes=(16,))
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 1))
    variables = model.init(jax.random.key(0), x)
    eval_out = model.apply(variables, x)
    np.testing.assert_array_equal(eval_out, model.apply(variables, x, train=False))
    train_out = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(2)})
    assert not np.allclose(eval_out, train_out)


def test_cnn_jit_matches_eager():
    model = CNN(conv_features=(4, 8), dense_sizes=(16,))
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 1))
    variables = model.init(jax.random.key(0), x)
    eager = model.apply(variables, x)
    jitted = jax.jit(model.apply)(variables, x)
    np.testing.assert_allclose(eager, jitted, rtol=1e-5, atol=1e-5)


def test_cnn_bfloat16_compute_keeps_float32_params():
    model = CNN(conv_features=(4,), dense_sizes=(8,), dtype=jnp.bfloat16)
    x = jnp.ones((2, 8, 8, 1))
    variables = model.init(jax.random.key(0), x)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables["params"]))
    assert model.apply(variables, x).dtype == jnp.float32


def test_alexnet_param_count_matches_torchvision():
    assert param_count(AlexNet(), (1, 224, 224, 3)) == 61_100_840
    # The adaptive pool to 6x6 makes the count independent of the input size.
    assert param_count(AlexNet(), (1, 256, 256, 3)) == 61_100_840


def test_alexnet_tiny_output_shape():
    model = AlexNetTiny()
    x = jnp.ones((2, 32, 32, 3))
    variables = jax.jit(model.init)(jax.random.key(0), x)
    assert jax.jit(model.apply)(variables, x).shape == (2, 10)
    rngs = {"dropout": jax.random.key(1)}
    assert jax.eval_shape(lambda: model.apply(variables, x, train=True, rngs=rngs)).shape == (2, 10)


def test_alexnet_rejects_too_small_input():
    x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
    with pytest.raises(ValueError, match="AlexNetTiny"):
        jax.eval_shape(AlexNet().init, jax.random.key(0), x)


def test_adaptive_avg_pool_matches_torch_definition():
    # Output cell i averages rows floor(i*5/3) .. ceil((i+1)*5/3): [0, 2), [1, 4), [3, 5).
    x = jnp.arange(5.0).reshape(1, 5, 1, 1) * jnp.ones((1, 5, 2, 1))  # [1, 5, 2, 1]
    y = adaptive_avg_pool(x, (3, 1))  # [1, 3, 1, 1]
    np.testing.assert_allclose(np.asarray(y)[0, :, 0, 0], [0.5, 2.0, 3.5])
    x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    y = adaptive_avg_pool(x, (2, 2))
    np.testing.assert_allclose(np.asarray(y)[0, :, :, 0], [[2.5, 4.5], [10.5, 12.5]])


@pytest.mark.parametrize("impl", ["xla", "banded", "patches"])
def test_conv_on_an_input_smaller_than_its_kernel_names_both(impl):
    with pytest.raises(
        ValueError, match=r"input \(3, 3\) \(padded \(3, 3\)\) is smaller than the kernel \(5, 5\)"
    ):
        Conv(2, (5, 5), padding="VALID", implementation=impl).init(
            jax.random.key(0), jnp.ones((1, 3, 3, 1))
        )
