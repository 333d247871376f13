"""Rematerialization (`model.remat`): the same values and gradients, recomputed blocks."""

import functools
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


def _same_values_and_gradients(plain, remat, inputs, **kwargs):
    """Both models from the same variables: one tree, the same loss and gradients, remat's
    jaxpr checkpointed and the plain one not."""
    variables = jax.jit(functools.partial(plain.init, **kwargs))(jax.random.key(0), *inputs)
    assert jax.tree_util.tree_structure(
        jax.eval_shape(functools.partial(remat.init, **kwargs), jax.random.key(0), *inputs)
    ) == jax.tree_util.tree_structure(variables)  # checkpoints fit both

    def value_and_grad(model):
        def loss(v):
            return jnp.sum(model.apply(v, *inputs, **kwargs).astype(jnp.float32) ** 2)

        return jax.jit(jax.value_and_grad(loss))(variables)

    _assert_close(value_and_grad(remat), value_and_grad(plain))
    assert _checkpointed(jax.make_jaxpr(lambda v: remat.apply(v, *inputs, **kwargs))(variables))
    assert not _checkpointed(jax.make_jaxpr(lambda v: plain.apply(v, *inputs, **kwargs))(variables))


def test_a_rematerialized_cnn_stack_gives_the_same_loss_and_gradients():
    from dl.models.cnn import CNN

    x = jax.random.normal(jax.random.key(3), (3, 12, 12, 2))
    # The "patches" convolutions: the implementation whose intermediates are largest.
    fields = dict(conv_features=(4, 6), dense_sizes=(8,), num_outputs=5,
                  conv_implementation="patches")  # fmt: skip
    _same_values_and_gradients(CNN(**fields), CNN(**fields, remat="full"), (x,))


def test_a_rematerialized_alexnet_gives_the_same_loss_and_gradients():
    from dl.models.cnn import AlexNetTiny

    x = jax.random.normal(jax.random.key(4), (2, 32, 32, 3))
    _same_values_and_gradients(
        AlexNetTiny(dropout_rate=0.0, dense_size=16),
        AlexNetTiny(dropout_rate=0.0, dense_size=16, remat="dots_saveable"),
        (x,),
    )


@pytest.mark.parametrize("model,layer", [("graph", "gn"), ("node", "gcn"), ("graph", "gat")])
def test_rematerialized_graph_layers_give_the_same_loss_and_gradients(layer, model):
    from dl.models.gnn import GraphClassifier, NodeClassifier

    rng = np.random.default_rng(0)
    nodes = rng.normal(size=(3, 5, 3)).astype(np.float32)
    senders = np.array([[0, 1, 1, 2, 0, 0], [0, 1, 0, 0, 0, 0], [0, 1, 2, 3, 0, 0]], np.int32)
    receivers = np.array([[1, 0, 2, 1, 0, 0], [1, 0, 0, 0, 0, 0], [1, 2, 3, 0, 0, 0]], np.int32)
    n_node, n_edge = np.array([3, 2, 4], np.int32), np.array([4, 2, 4], np.int32)
    cls = GraphClassifier if model == "graph" else NodeClassifier
    fields = dict(layer=layer, hidden_sizes=(4, 4), num_heads=2, num_outputs=3)
    _same_values_and_gradients(
        cls(**fields), cls(**fields, remat="full"), (nodes, senders, receivers, n_node, n_edge)
    )


def test_a_rematerialized_seq2seq_gives_the_same_loss_and_gradients():
    from dl.models.seq2seq import Seq2Seq

    src = jnp.array([[5, 6, 7, 0], [8, 9, 0, 0]])
    tgt_in = jnp.array([[1, 5, 6], [1, 7, 0]])
    fields = dict(src_vocab_size=12, tgt_vocab_size=10, embed_dim=6, hidden_size=8,
                  num_layers=2, attention=True, cell="lstm")  # fmt: skip
    _same_values_and_gradients(Seq2Seq(**fields), Seq2Seq(**fields, remat="full"), (src, tgt_in))


@pytest.mark.slow
def test_remat_is_a_flag_of_the_shipped_configs_and_a_resumable_change(tmp_path):
    """`--config.model.remat=full` on a shipped config; a run resumed with it ends as
    the run without it (the same variables, the same arithmetic, within 1e-6)."""
    import io

    from conftest import load_config
    from dl.train import Checkpoints, build, train

    c = load_config("rnn_digits")
    c.model.hidden_size, c.num_train_steps, c.schedule.name = 16, 20, "constant"
    c.log_every_steps = c.eval_every_steps = c.checkpoint_every_steps = 10
    train(c, str(tmp_path / "plain"), stream=io.StringIO())
    c.num_train_steps = 10
    train(c, str(tmp_path / "switched"), stream=io.StringIO())
    c.num_train_steps, c.model.remat = 20, "full"
    train(c, str(tmp_path / "switched"), stream=io.StringIO())  # no config-change refusal
    abstract = build(c).abstract_state()
    a = Checkpoints(str(tmp_path / "plain"), read_only=True).restore(abstract)
    b = Checkpoints(str(tmp_path / "switched"), read_only=True).restore(abstract)
    assert a[2] == b[2] == 20
    _assert_close(b[0].params, a[0].params)
