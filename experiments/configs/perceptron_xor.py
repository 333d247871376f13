r"""The perceptron on XOR: it cannot converge, and the run says so.

    python -m experiments.train --config=experiments/configs/perceptron_xor.py \
        --workdir=runs/perceptron_xor

XOR is not linearly separable, so no (w, b) classifies all four points and
the mistake-driven updates cycle forever. After num_train_steps the summary
reports converged: false with the training accuracy it reached (at most 3/4).
"""

from experiments.configs import perceptron_and


def get_config():
    c = perceptron_and.get_config()
    c.name = "perceptron_xor"
    c.dataset.name = "xor"
    return c
