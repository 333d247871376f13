"""Rematerialization (`model.remat`): the same values and gradients, recomputed blocks."""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dl.errors import ConfigError
from dl.models.remat import POLICIES, rematerialize
from dl.models.resnet import CifarResNet


def _loss_and_grads(model, variables, x, y):
    def loss(params):
        logits, new_state = model.apply(
            {"params": params, "batch_stats": variables["batch_stats"]},
            x,
            train=True,
            mutable=["batch_stats"],
        )
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new_state

    return jax.jit(jax.value_and_grad(loss, has_aux=True))(variables["params"])


def _assert_close(got, want):
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_rematerialized_resnet_gives_the_same_loss_gradients_and_statistics():
    x = jax.random.normal(jax.random.key(1), (4, 8, 8, 1))
    y = jnp.array([0, 3, 7, 9])
    plain = CifarResNet(num_blocks=1, num_filters=4)
    variables = jax.jit(plain.init)(jax.random.key(0), x)
    remat = CifarResNet(num_blocks=1, num_filters=4, remat="full")
    assert jax.tree_util.tree_structure(
        jax.eval_shape(remat.init, jax.random.key(0), x)
    ) == jax.tree_util.tree_structure(variables)  # the same variables: checkpoints fit both
    _assert_close(_loss_and_grads(remat, variables, x, y), _loss_and_grads(plain, variables, x, y))
    # Recomputed in the backward pass: the blocks are checkpointed; "off" is the plain block.
    assert _checkpointed(jax.make_jaxpr(remat.apply)(variables, x))
    assert not _checkpointed(jax.make_jaxpr(plain.apply)(variables, x))


def _checkpointed(jaxpr) -> bool:
    """Whether a jaxpr holds a jax.checkpoint (its primitive: remat2 or checkpoint)."""
    names = set(re.findall(r"= (\w+)\[", str(jaxpr)))
    return bool(names & {"remat2", "checkpoint", "remat"})


class _Block(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        y = nn.Dense(8)(x)
        return x + nn.Dense(x.shape[-1])(nn.tanh(y) if train else y)


@pytest.mark.parametrize("policy", [p for p in POLICIES if p != "off"])
def test_every_policy_keeps_values_and_gradients(policy):
    class Net(nn.Module):
        block: type = _Block

        @nn.compact
        def __call__(self, x, train: bool = False):
            for i in range(3):
                x = self.block(name=f"block{i}")(x, train)
            return jnp.sum(x**2)

    x = jax.random.normal(jax.random.key(0), (5, 4))
    plain, remat = Net(), Net(block=rematerialize(_Block, policy, static_argnums=(2,)))
    params = plain.init(jax.random.key(1), x)

    def value_and_grad(model):
        return jax.jit(jax.value_and_grad(lambda p: model.apply(p, x, True)))(params)

    _assert_close(value_and_grad(remat), value_and_grad(plain))


def test_an_unknown_policy_names_the_accepted_ones():
    x = jnp.zeros((2, 8, 8, 1))
    with pytest.raises(ConfigError, match="model.remat must be one of .*'dots_saveable'"):
        jax.eval_shape(CifarResNet(num_blocks=1, num_filters=4, remat="sometimes").init,
                       jax.random.key(0), x)  # fmt: skip


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_rematerialized_recurrent_layer_gives_the_same_loss_and_gradients(cell):
    from dl.models.recurrent import RecurrentClassifier

    x = jax.random.normal(jax.random.key(2), (3, 7, 5))
    lengths = jnp.array([7, 4, 1])
    plain = RecurrentClassifier(cell=cell, hidden_size=8, num_layers=2, num_outputs=4)
    remat = RecurrentClassifier(cell=cell, hidden_size=8, num_layers=2, num_outputs=4, remat="full")
    params = jax.jit(plain.init)(jax.random.key(0), x)

    def value_and_grad(model):
        return jax.jit(
            jax.value_and_grad(lambda p: jnp.sum(model.apply(p, x, lengths=lengths) ** 2))
        )(params)

    _assert_close(value_and_grad(remat), value_and_grad(plain))
    assert _checkpointed(jax.make_jaxpr(lambda p: remat.apply(p, x, lengths=lengths))(params))
