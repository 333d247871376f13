"""Tests for the recurrent models: cell equations, padding invariance, scan, heads, sampling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl.errors import ConfigError
from dl.models.recurrent import CharLM, RecurrentClassifier, RecurrentRegressor
from dl.models.recurrent_cells import CELLS, GRUCell, LSTMCell, SimpleRNNCell, make_cell
from dl.models.recurrent_layers import Bidirectional, RecurrentLayer
from dl.models.sampling import sample

HIDDEN, FEATURES, BATCH = 5, 3, 4


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _random_params(variables, seed):
    """Replaces every parameter (biases included) with N(0, 0.5) draws."""
    leaves, treedef = jax.tree.flatten(variables)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(
        treedef,
        [0.5 * jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves, strict=True)],
    )


def _np_rnn(p, h, x):
    return np.tanh(x @ p["input"]["kernel"] + p["input"]["bias"] + h @ p["hidden"]["kernel"])


def _np_lstm(p, carry, x):
    c, h = carry
    z = x @ p["input"]["kernel"] + p["input"]["bias"] + h @ p["hidden"]["kernel"]
    i, f, g, o = (z[:, k * HIDDEN : (k + 1) * HIDDEN] for k in range(4))
    new_c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
    return new_c, _sigmoid(o) * np.tanh(new_c)


def _np_gru(p, h, x):
    wi, bi = p["input"]["kernel"], p["input"]["bias"]
    wh, bh = p["hidden"]["kernel"], p["hidden"]["bias"]
    sl = [slice(k * HIDDEN, (k + 1) * HIDDEN) for k in range(3)]
    r = _sigmoid(x @ wi[:, sl[0]] + bi[sl[0]] + h @ wh[:, sl[0]] + bh[sl[0]])
    z = _sigmoid(x @ wi[:, sl[1]] + bi[sl[1]] + h @ wh[:, sl[1]] + bh[sl[1]])
    n = np.tanh(x @ wi[:, sl[2]] + bi[sl[2]] + r * (h @ wh[:, sl[2]] + bh[sl[2]]))
    return (1.0 - z) * n + z * h


@pytest.mark.parametrize(
    "cell_cls, reference",
    [(SimpleRNNCell, _np_rnn), (LSTMCell, _np_lstm), (GRUCell, _np_gru)],
    ids=["rnn", "lstm", "gru"],
)
def test_cell_matches_numpy_equations(cell_cls, reference):
    cell = cell_cls(hidden_size=HIDDEN)
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(k1, (BATCH, FEATURES))
    carry = jax.tree.map(lambda z: jax.random.normal(k2, z.shape), cell.initialize_carry((BATCH,)))
    variables = _random_params(jax.jit(cell.init)(k3, carry, x), seed=1)
    new_carry, y = jax.jit(cell.apply)(variables, carry, x)

    p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
    expected = reference(p, jax.tree.map(np.asarray, carry), np.asarray(x, np.float64))
    np.testing.assert_allclose(np.asarray(y), np.asarray(jax.tree.leaves(expected)[-1]), atol=1e-5)
    for got, want in zip(jax.tree.leaves(new_carry), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)


def test_fused_kernel_shapes_and_forget_bias():
    x = jnp.ones((2, FEATURES))
    lstm = LSTMCell(hidden_size=HIDDEN)
    p = jax.jit(lstm.init)(jax.random.key(0), lstm.initialize_carry((2,)), x)["params"]
    assert p["input"]["kernel"].shape == (FEATURES, 4 * HIDDEN)
    assert p["hidden"]["kernel"].shape == (HIDDEN, 4 * HIDDEN)
    assert "bias" not in p["hidden"]
    bias = np.asarray(p["input"]["bias"])
    np.testing.assert_array_equal(bias[HIDDEN : 2 * HIDDEN], 1.0)
    np.testing.assert_array_equal(np.delete(bias, np.s_[HIDDEN : 2 * HIDDEN]), 0.0)

    gru = GRUCell(hidden_size=HIDDEN)
    p = jax.jit(gru.init)(jax.random.key(0), gru.initialize_carry((2,)), x)["params"]
    assert p["input"]["kernel"].shape == (FEATURES, 3 * HIDDEN)
    assert p["hidden"]["bias"].shape == (3 * HIDDEN,)


def test_unknown_cell_names_known_ones():
    with pytest.raises(ConfigError, match="gru"):
        make_cell("transformer", 4)
    assert set(CELLS) == {"rnn", "lstm", "gru"}


def _padded_batch(seed=0, time=6, length=3):
    """Two sequences: one full, one valid for ``length`` steps followed by random junk."""
    x = jax.random.normal(jax.random.key(seed), (2, time, FEATURES))
    return x, jnp.array([time, length])


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_padding_does_not_change_results(cell, bidirectional):
    x, lengths = _padded_batch()
    valid = int(lengths[1])
    if bidirectional:
        layer = Bidirectional(cell=cell, hidden_size=HIDDEN)
    else:
        layer = RecurrentLayer(cell=cell, hidden_size=HIDDEN)
    variables = jax.jit(layer.init)(jax.random.key(1), x)
    apply = jax.jit(layer.apply)

    carry, out = apply(variables, x, lengths=lengths)
    alone_carry, alone_out = apply(variables, x[1:2, :valid])
    np.testing.assert_allclose(out[1, :valid], alone_out[0], atol=1e-6)
    np.testing.assert_array_equal(out[1, valid:], 0.0)
    for got, want in zip(jax.tree.leaves(carry), jax.tree.leaves(alone_carry), strict=True):
        np.testing.assert_allclose(got[1], want[0], atol=1e-6)

    mask = jnp.arange(x.shape[1])[None, :] < lengths[:, None]
    _, out_masked = apply(variables, x, mask=mask)
    np.testing.assert_allclose(out_masked, out, atol=1e-6)


def test_reverse_starts_at_last_valid_step():
    x, lengths = _padded_batch(time=5, length=2)
    layer = RecurrentLayer(cell="gru", hidden_size=HIDDEN, reverse=True)
    variables = jax.jit(layer.init)(jax.random.key(0), x)
    _, out = jax.jit(layer.apply)(variables, x, lengths=lengths)
    # Position 1 is the first step of the backward pass: it sees only x[1, 1].
    cell = GRUCell(hidden_size=HIDDEN)
    h0 = cell.initialize_carry((1,))
    _, y = cell.apply({"params": variables["params"]["cell"]}, h0, x[1:2, 1])
    np.testing.assert_allclose(out[1, 1], y[0], atol=1e-6)


def test_scan_is_not_unrolled():
    layer = RecurrentLayer(cell="lstm", hidden_size=HIDDEN)
    variables = jax.eval_shape(layer.init, jax.random.key(0), jnp.ones((2, 4, FEATURES)))

    def text(time):
        x = jax.ShapeDtypeStruct((2, time, FEATURES), jnp.float32)
        return jax.jit(lambda v, x: layer.apply(v, x)[1]).lower(variables, x).as_text()

    assert len(text(256)) <= 1.5 * len(text(32))


def test_classifier_shapes_and_errors():
    model = RecurrentClassifier(cell="gru", hidden_size=8, num_outputs=10)
    images = jnp.ones((3, 8, 8, 1))
    variables = jax.jit(model.init)(jax.random.key(0), images)
    apply = jax.jit(model.apply)
    logits_img = apply(variables, images)
    logits_seq = apply(variables, images[..., 0])
    assert logits_img.shape == (3, 10)
    np.testing.assert_allclose(logits_img, logits_seq, atol=1e-6)
    with pytest.raises(ValueError, match=r"rank 3.*\(3, 64\)"):
        model.apply(variables, jnp.ones((3, 64)))


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_classifier_reads_last_valid_step(bidirectional):
    x, lengths = _padded_batch()
    model = RecurrentClassifier(
        cell="lstm",
        hidden_size=HIDDEN,
        num_layers=2,
        bidirectional=bidirectional,
        num_outputs=3,
    )
    variables = jax.jit(model.init)(jax.random.key(0), x)
    apply = jax.jit(model.apply)
    padded = apply(variables, x, lengths=lengths)
    alone = apply(variables, x[1:2, : int(lengths[1])])
    np.testing.assert_allclose(padded[1], alone[0], atol=1e-6)


def test_regressor_shapes():
    model = RecurrentRegressor(cell="rnn", hidden_size=6, horizon=3, num_outputs=2)
    x = jnp.ones((4, 10, 2))
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    assert jax.eval_shape(model.apply, variables, x).shape == (4, 6)
    unflat = RecurrentRegressor(cell="rnn", hidden_size=6, horizon=3, num_outputs=2, flatten=False)
    assert jax.eval_shape(unflat.apply, variables, x).shape == (4, 3, 2)
    univariate = RecurrentRegressor(cell="gru", hidden_size=6)
    v = jax.eval_shape(univariate.init, jax.random.key(0), jnp.ones((4, 10)))
    assert jax.eval_shape(univariate.apply, v, jnp.ones((4, 10))).shape == (4, 1)


def test_charlm_sampling_carries_state():
    model = CharLM(vocab_size=7, embed_dim=4, cell="lstm", hidden_size=8, num_layers=2)
    prompt = jnp.array([[1, 4, 5], [2, 3, 3]])
    variables = jax.jit(model.init)(jax.random.key(0), prompt)
    assert jax.eval_shape(model.apply, variables, prompt).shape == (2, 3, 7)

    greedy = jax.jit(lambda v, p: sample(model, v, jax.random.key(1), p, 5, 0.0))(variables, prompt)
    assert greedy.shape == (2, 5)
    # Greedy samples agree with re-running the whole prefix (the stateful step is exact).
    full = jnp.concatenate([prompt, greedy], axis=1)
    logits = jax.jit(model.apply)(variables, full[:, :-1])
    np.testing.assert_array_equal(jnp.argmax(logits[:, 2:], axis=-1), greedy)

    drawn = jax.jit(lambda v, p: sample(model, v, jax.random.key(2), p, 6, 1.0))(
        variables, prompt[0]
    )
    assert drawn.shape == (6,)
    assert bool(jnp.all((drawn >= 0) & (drawn < 7)))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_bfloat16_traces_with_stable_carry_dtype(cell):
    model = RecurrentClassifier(cell=cell, hidden_size=8, bidirectional=True, dtype=jnp.bfloat16)
    x = jax.ShapeDtypeStruct((2, 8, 8, 1), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    assert jax.tree.leaves(variables)[0].dtype == jnp.float32
    assert jax.eval_shape(model.apply, variables, x).dtype == jnp.bfloat16
